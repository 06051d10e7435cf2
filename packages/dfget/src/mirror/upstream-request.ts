import { HttpError, type RouteContext } from '@shoal/core'
import { pullScope, type UpstreamAuth } from './upstream-auth.ts'
import { UnknownUpstreamError, UpstreamAuthError } from '../errors.ts'
import type { Upstream, Upstreams } from './upstreams.ts'

export interface UpstreamRequestComponents {
  upstreams: Pick<Upstreams, 'resolve' | 'target' | 'repository'>
  upstreamAuth: Pick<UpstreamAuth, 'authorization' | 'invalidate'>
}

/** Where a mirror request goes, and with which credentials. */
export interface UpstreamRequest {
  upstream: Upstream
  /** The upstream URL: `?ns=` dropped, Docker Hub names with `library/`. */
  url: string
  /** The client's own Authorization, or the daemon's for this upstream, or none. */
  authorization?: string
  /** Whether `authorization` is the daemon's own (to be refreshed once on a 401). */
  own: boolean
}

/**
 * Resolves a mirror request to its upstream (`?ns=`, or the default) and its
 * credentials: the client's own when it sends any (they win), else the daemon's, for a
 * token scoped to `name` — the repository the route parsed (a path is not parsed again
 * here, so the token's scope and the URL name the same repository).
 *
 * @throws {HttpError} 404 `NAME_UNKNOWN` for an `?ns=` that is no upstream, 502 when the daemon's credentials cannot be used
 */
export async function upstreamRequest (ctx: RouteContext, components: UpstreamRequestComponents, pathname: string = ctx.url.pathname, name?: string): Promise<UpstreamRequest> {
  const ns = ctx.url.searchParams.get('ns') ?? undefined
  let upstream: Upstream
  try {
    upstream = components.upstreams.resolve(ns)
  } catch (err) {
    if (err instanceof UnknownUpstreamError) {
      throw new HttpError(404, 'NAME_UNKNOWN', err.message)
    }
    throw err
  }
  const url = components.upstreams.target(upstream, pathname, ctx.url.searchParams)
  const client = ctx.req.headers.authorization
  if (client != null) {
    return { upstream, url, authorization: client, own: false }
  }
  try {
    const authorization = await components.upstreamAuth.authorization(upstream,
      name != null ? pullScope(components.upstreams.repository(upstream, name)) : undefined, { signal: ctx.signal })
    return { upstream, url, ...(authorization != null ? { authorization } : {}), own: authorization != null }
  } catch (err) {
    if (err instanceof UpstreamAuthError) {
      throw new HttpError(502, 'UNAVAILABLE', err.message)
    }
    throw err
  }
}
