import { HttpError, InvalidDigestError, parseDigest, SourceRefusedError, type ComponentLogger, type Logger, type PieceStore, type Route, type RouteContext, type SourceClient } from '@shoal/core'
import { sendDenial, type BlobAuthorizer, type CheckOptions } from './blob-authorizer.ts'
import { sendDownload } from './send-download.ts'
import { proxyToUpstream } from './upstream-proxy.ts'
import { upstreamRequest, type UpstreamRequestComponents } from './upstream-request.ts'
import { AuthorizationUnavailableError } from '../errors.ts'
import type { DownloadManager } from '../download/download-manager.ts'
import type { DfgetMetrics } from '../metrics.ts'

/** Nothing yet: the upstreams are a component (`?ns=` picks one per request). */
export type RegistryMirrorInit = Record<string, never>

export interface RegistryMirrorComponents extends UpstreamRequestComponents {
  downloads: DownloadManager
  store: PieceStore
  /** For the upstreams (always allowed) and the check of blob URLs. */
  source: Pick<SourceClient, 'fetch' | 'check'>
  metrics: DfgetMetrics
  logger: ComponentLogger
  /** Asked before any blob byte is served. */
  authorizer: Pick<BlobAuthorizer, 'check'>
}

/** An OCI repository name (distribution spec), such as `library/alpine`. */
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/

/** Registry error bodies, as the distribution spec has them. */
export const registryErrorBody = (err: HttpError): unknown => ({ errors: [{ code: err.code, message: err.message, detail: err.detail ?? null }] })

/**
 * The registry mirror the container runtime pulls through. Blob GETs go through the
 * swarm; everything else a pull needs (`/v2/`, manifests, token challenges) passes
 * through to the upstream registry unchanged. Writes are refused: this is a mirror.
 * No blob byte is served before the upstream said this client may read that blob in
 * that repository.
 */
export function registryMirrorRoutes (components: RegistryMirrorComponents, _init: RegistryMirrorInit = {}): Route[] {
  const log: Logger = components.logger.forComponent('shoal:dfget:mirror')

  return [
    {
      methods: ['GET'],
      pattern: /^\/v2\/(?<name>.+)\/blobs\/(?<digest>[^/]+)$/,
      handler: async (ctx) => {
        const name = ctx.params.name ?? ''
        const digest = ctx.params.digest ?? ''
        if (!NAME_RE.test(name)) {
          throw new HttpError(400, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name.slice(0, 256))}`)
        }
        try {
          parseDigest(digest)
        } catch (err) {
          if (err instanceof InvalidDigestError) {
            throw new HttpError(400, 'DIGEST_INVALID', err.message)
          }
          throw err
        }
        // the upstream ?ns= names; the client's credentials, else the daemon's own there
        const { url, authorization } = await upstreamRequest(ctx, components, `/v2/${name}/blobs/${digest}`)
        // before anything else: the content may be on disk, on its way for another
        // client or coming from peers, and none of it is this client's unless the
        // upstream says so
        if (!await authorize(ctx, components.authorizer, url, authorization != null ? { authorization } : {})) {
          return
        }
        log.debug({ name, digest }, 'blob through the swarm')
        await sendDownload(ctx, components, {
          url,
          digest,
          ...(authorization != null ? { headers: { authorization } } : {})
        }, {
          'docker-content-digest': digest,
          'docker-distribution-api-version': 'registry/2.0'
        })
      }
    },
    {
      methods: ['GET', 'HEAD'],
      pattern: /^\/v2(\/.*)?$/,
      handler: async (ctx) => {
        const target = await upstreamRequest(ctx, components)
        await proxyToUpstream(ctx, {
          target: target.url,
          source: components.source,
          ...(target.authorization != null ? { authorization: target.authorization } : {}),
          // the daemon's own token was refused (revoked, expired early): learn afresh, once
          ...(target.own ? { reauthorize: async () => { components.upstreamAuth.invalidate(target.upstream); return (await upstreamRequest(ctx, components)).authorization } } : {})
        })
      }
    }
  ]
}

/**
 * Asks the upstream whether the client may read `url`; when not, answers the request
 * with the upstream's denial and resolves false.
 *
 * @throws {HttpError} 502 when the upstream cannot be asked, 403 when `url` is not an allowed source
 */
export async function authorize (ctx: RouteContext, authorizer: Pick<BlobAuthorizer, 'check'>, url: string, headers: Record<string, string>, options: CheckOptions = {}): Promise<boolean> {
  let denial
  try {
    denial = await authorizer.check(url, headers, ctx.signal, options)
  } catch (err) {
    if (err instanceof AuthorizationUnavailableError) {
      throw new HttpError(502, 'UNAVAILABLE', err.message)
    }
    if (err instanceof SourceRefusedError) {
      throw new HttpError(403, 'DENIED', err.message)
    }
    throw err
  }
  if (denial != null) {
    sendDenial(ctx.res, denial)
    return false
  }
  return true
}
