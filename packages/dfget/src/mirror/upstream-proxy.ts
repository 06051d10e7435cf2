import { pipeline } from 'node:stream/promises'
import { HttpError, SourceRefusedError, SourceTooLargeError, type RouteContext, type SourceClient, type SourceResponse } from '@shoal/core'

/** Request headers a registry client sends that the upstream should see. */
const FORWARD_REQUEST = ['accept', 'accept-encoding', 'authorization', 'user-agent', 'if-none-match', 'if-modified-since', 'range']

/** Response headers passed back unchanged. */
const FORWARD_RESPONSE = [
  'content-type', 'content-length', 'content-range', 'content-encoding', 'docker-content-digest', 'docker-distribution-api-version',
  'www-authenticate', 'etag', 'last-modified', 'accept-ranges', 'cache-control', 'link', 'oci-subject', 'oci-filters-applied', 'location'
]

export interface ProxyOptions {
  /** The whole upstream URL to ask: the mirror request's path on the upstream its `?ns=` names, `?ns=` dropped. */
  target: string
  /** Sent instead of the client's Authorization (the client's own, or the daemon's). @default the client's */
  authorization?: string
  /** After a 401 to `authorization`, gives a fresh one to try once more. @default none: the 401 goes to the client */
  reauthorize?: () => Promise<string | undefined>
  /** The upstream is always one of its allowed sources; it checks redirects and sizes. */
  source: Pick<SourceClient, 'fetch'>
}

/**
 * Passes a request through to the upstream registry and its answer back unchanged:
 * `/v2/`, manifests, tags, token challenges. Only GET and HEAD reach here; the mirror
 * is read-only.
 */
export async function proxyToUpstream (ctx: RouteContext, options: ProxyOptions): Promise<void> {
  const { req, res, signal } = ctx
  const headers: Record<string, string> = {}
  for (const name of FORWARD_REQUEST) {
    const value = req.headers[name]
    if (typeof value === 'string') {
      headers[name] = value
    }
  }
  if (options.authorization != null) {
    headers.authorization = options.authorization
  }

  let upstream: SourceResponse
  try {
    const ask = async (): Promise<SourceResponse> => options.source.fetch(options.target, { method: req.method === 'HEAD' ? 'HEAD' : 'GET', headers, signal })
    upstream = await ask()
    if (upstream.statusCode === 401 && options.reauthorize != null) {
      await upstream.dump()
      const fresh = await options.reauthorize()
      if (fresh != null) {
        headers.authorization = fresh
      }
      upstream = await ask()
    }
  } catch (err) {
    if (err instanceof HttpError) {
      throw err
    }
    if (err instanceof SourceRefusedError) {
      throw new HttpError(403, 'DENIED', err.message)
    }
    if (err instanceof SourceTooLargeError) {
      throw new HttpError(502, 'UNAVAILABLE', err.message)
    }
    throw new HttpError(502, 'UNAVAILABLE', `upstream registry ${new URL(options.target).host} unreachable: ${(err as Error).message}`)
  }

  const out: Record<string, string | string[]> = {}
  for (const name of FORWARD_RESPONSE) {
    const value = upstream.headers[name]
    if (value != null) {
      out[name] = value
    }
  }
  try {
    res.writeHead(upstream.statusCode, out)
    if (req.method === 'HEAD') {
      await upstream.dump()
      res.end()
      return
    }
    await pipeline(upstream.body, res, { signal })
  } finally {
    // frees the source client's slot however the client went away
    upstream.body.destroy()
  }
}
