import { HttpError, SourceRefusedError, type ComponentLogger, type Logger, type PieceStore, type Route, type RouteContext, type SourceClient } from '@shoal/core'
import { sendDenial, type BlobAuthorizer, type CheckOptions, type Denial } from './blob-authorizer.ts'
import { sendBlobHead } from './blob-head.ts'
import { sendBlobRange } from './blob-range.ts'
import { MANIFEST_MEDIA_TYPES } from './constants.ts'
import { checkDigest, checkName, parseReference } from './oci-request.ts'
import { parseRange } from './range.ts'
import { sendDownload } from './send-download.ts'
import { proxyToUpstream } from './upstream-proxy.ts'
import { upstreamRequest, type UpstreamRequest, type UpstreamRequestComponents } from './upstream-request.ts'
import { AuthorizationUnavailableError } from '../errors.ts'
import { downloadManifest } from './manifest-download.ts'
import type { ManifestCache, CachedManifest } from './manifest-cache.ts'
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
  /** Asked before any blob byte or manifest by digest is served. */
  authorizer: Pick<BlobAuthorizer, 'check'> & Partial<Pick<BlobAuthorizer, 'lengthOf'>>
  /** Manifests by digest, verified and held. */
  manifests: Pick<ManifestCache, 'get'>
}

/** Registry error bodies, as the distribution spec has them. */
export const registryErrorBody = (err: HttpError): unknown => ({ errors: [{ code: err.code, message: err.message, detail: err.detail ?? null }] })

const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' }

/**
 * The registry mirror the container runtime pulls through: the pull side of the OCI
 * Distribution API. Names, digests, tags and ranges are checked here first (a 4xx with
 * the spec's error code, whatever the upstream would make of them). Blobs (GET, Range,
 * HEAD) come from this host's store or the swarm; manifests by digest are held once
 * verified (through the swarm too); `/v2/`, manifests by tag and the rest pass through
 * to the upstream that `?ns=` names. Writes get a 405: this is a mirror. No blob byte
 * or manifest by digest is served before the upstream said this client may read it in
 * that repository.
 */
export function registryMirrorRoutes (components: RegistryMirrorComponents, _init: RegistryMirrorInit = {}): Route[] {
  const log: Logger = components.logger.forComponent('shoal:dfget:mirror')
  /** Passes a request through to the upstream its `?ns=` names, with the client's credentials or the daemon's own. */
  const passThrough = async (ctx: RouteContext, name?: string): Promise<void> => {
    const target = await upstreamRequest(ctx, components, ctx.url.pathname, name)
    await proxyToUpstream(ctx, {
      target: target.url,
      source: components.source,
      ...(target.authorization != null ? { authorization: target.authorization } : {}),
      // the daemon's own token was refused (revoked, expired early): learn afresh, once
      ...(target.own ? { reauthorize: async () => { components.upstreamAuth.invalidate(target.upstream); return (await upstreamRequest(ctx, components, ctx.url.pathname, name)).authorization } } : {})
    })
  }

  return [
    {
      methods: ['GET', 'HEAD'],
      pattern: /^\/v2\/(?<name>.+)\/blobs\/(?<digest>[^/]+)$/,
      handler: async (ctx) => {
        const name = checkName(ctx.params.name ?? '')
        const digest = checkDigest(ctx.params.digest ?? '')
        const range = ctx.req.method === 'GET' ? parseRange(ctx.req.headers.range) : { kind: 'none' as const }
        // the upstream ?ns= names; the client's credentials, else the daemon's own there
        const pathname = `/v2/${name}/blobs/${digest}`
        // before anything else: the content may be on disk, on its way for another
        // client or coming from peers, and none of it is this client's unless the
        // upstream says so
        const target = await authorizeTarget(ctx, components, await upstreamRequest(ctx, components, pathname, name), pathname, name, {})
        if (target == null) {
          return
        }
        const { url, authorization } = target
        const headers: Record<string, string> = authorization != null ? { authorization } : {}
        const out = { ...API_VERSION, 'docker-content-digest': digest, 'accept-ranges': 'bytes' }
        if (ctx.req.method === 'HEAD') {
          await sendBlobHead(ctx, components, { url, digest, headers, knownLength: components.authorizer.lengthOf?.(url) }, out)
          return
        }
        const request = { url, digest, ...(authorization != null ? { headers } : {}) }
        log.debug({ name, digest, range: range.kind }, 'blob through the swarm')
        if (range.kind === 'from' || range.kind === 'suffix') {
          await sendBlobRange(ctx, components, request, range, out)
        } else {
          await sendDownload(ctx, components, request, out)
        }
      }
    },
    {
      methods: ['GET', 'HEAD'],
      pattern: /^\/v2\/(?<name>.+)\/manifests\/(?<reference>[^/]+)$/,
      handler: async (ctx) => {
        const name = checkName(ctx.params.name ?? '')
        const reference = parseReference(ctx.params.reference ?? '')
        if (reference.kind === 'tag') {
          // tags move: always resolved upstream, with the client's Accept
          await passThrough(ctx, name)
          return
        }
        const pathname = `/v2/${name}/manifests/${reference.digest}`
        const accept = { accept: MANIFEST_MEDIA_TYPES.join(', ') }
        // registries do not redirect manifest requests: a 302 here is a login front end
        // answering a stranger, never a yes that unlocks a held private manifest
        const target = await authorizeTarget(ctx, components, await upstreamRequest(ctx, components, pathname, name), pathname, name, accept, { redirectMeansYes: false })
        if (target == null) {
          return
        }
        await sendManifestByDigest(ctx, components, target.url, reference.digest, { ...(target.authorization != null ? { authorization: target.authorization } : {}), ...accept })
      }
    },
    {
      methods: ['GET', 'HEAD'],
      pattern: /^\/v2\/(?<name>.+)\/(?:tags\/list|referrers\/[^/]+)$/,
      handler: async (ctx) => {
        await passThrough(ctx, checkName(ctx.params.name ?? ''))
      }
    },
    {
      // /v2/ (the API check and the token challenge) and anything else a client reads
      methods: ['GET', 'HEAD'],
      pattern: /^\/v2(\/.*)?$/,
      handler: async (ctx) => { await passThrough(ctx) }
    }
  ]
}

/**
 * Asks the upstream whether the request's credentials may read its URL. When they are
 * the daemon's own and the upstream answers 401 (a token revoked or expired early), a
 * fresh token is learnt and the question asked once more. Resolves with the request as
 * allowed (its credentials possibly fresh), or undefined once the client got the denial.
 */
async function authorizeTarget (ctx: RouteContext, components: RegistryMirrorComponents, target: UpstreamRequest, pathname: string, name: string, extra: Record<string, string>, options: CheckOptions = {}): Promise<UpstreamRequest | undefined> {
  const headersOf = (t: UpstreamRequest): Record<string, string> => ({ ...(t.authorization != null ? { authorization: t.authorization } : {}), ...extra })
  let denial = await checkAccess(ctx, components.authorizer, target.url, headersOf(target), options)
  if (denial?.status === 401 && target.own) {
    components.upstreamAuth.invalidate(target.upstream)
    target = await upstreamRequest(ctx, components, pathname, name)
    denial = await checkAccess(ctx, components.authorizer, target.url, headersOf(target), options)
  }
  if (denial != null) {
    sendDenial(ctx.res, denial)
    return undefined
  }
  return target
}

/**
 * A manifest by digest: immutable, so brought through the swarm once (like a blob) and
 * held once verified; served after the same authorization check as a blob. The digest
 * names the bytes whatever the client accepts, so the upstream is always asked with
 * every manifest type accepted: one authorization question per set of credentials,
 * shared by clients that differ only in Accept.
 */
async function sendManifestByDigest (ctx: RouteContext, components: RegistryMirrorComponents, url: string, digest: string, headers: Record<string, string>): Promise<void> {
  const manifest = await components.manifests.get(digest, async (options) => downloadManifest(components, { url, digest, headers }, options), { signal: ctx.signal })
  sendManifest(ctx, manifest)
}

function sendManifest (ctx: RouteContext, manifest: CachedManifest): void {
  ctx.res.writeHead(200, {
    ...API_VERSION,
    'content-type': manifest.contentType,
    'content-length': String(manifest.body.byteLength),
    'docker-content-digest': manifest.digest,
    etag: `"${manifest.digest}"`
  })
  ctx.res.end(ctx.req.method === 'HEAD' ? undefined : manifest.body)
}

/**
 * Asks the upstream whether the client may read `url`; when not, answers the request
 * with the upstream's denial and resolves false.
 *
 * @throws {HttpError} 502 when the upstream cannot be asked, 403 when `url` is not an allowed source
 */
export async function authorize (ctx: RouteContext, authorizer: Pick<BlobAuthorizer, 'check'>, url: string, headers: Record<string, string>, options: CheckOptions = {}): Promise<boolean> {
  const denial = await checkAccess(ctx, authorizer, url, headers, options)
  if (denial != null) {
    sendDenial(ctx.res, denial)
    return false
  }
  return true
}

/**
 * Asks the upstream whether the client may read `url`: undefined for yes, else its denial.
 *
 * @throws {HttpError} 502 when the upstream cannot be asked, 403 when `url` is not an allowed source
 */
async function checkAccess (ctx: RouteContext, authorizer: Pick<BlobAuthorizer, 'check'>, url: string, headers: Record<string, string>, options: CheckOptions): Promise<Denial | undefined> {
  try {
    return await authorizer.check(url, headers, ctx.signal, options)
  } catch (err) {
    if (err instanceof AuthorizationUnavailableError) {
      throw new HttpError(502, 'UNAVAILABLE', err.message)
    }
    if (err instanceof SourceRefusedError) {
      throw new HttpError(403, 'DENIED', err.message)
    }
    throw err
  }
}
