import { HttpError, type RegistryCredentials } from '@shoal/core'
import { UnknownUpstreamError } from '../errors.ts'
import type { Upstreams } from '../mirror/upstreams.ts'

/** Where an image reference's registry is reached: one of the daemon's upstreams. */
export interface PrefetchUpstream {
  /** Base URL of its registry API. */
  base: string
  /** The daemon's own credentials there, when configured. */
  credentials?: RegistryCredentials
}

/**
 * The upstream an image reference's registry host names (`--registry` or one of
 * `upstreams:`, Docker Hub under any of its names); other hosts are refused with a
 * 400 naming the host, never fetched from another registry.
 */
export function upstreamFor (host: string, upstreams: Pick<Upstreams, 'resolve'>): PrefetchUpstream {
  try {
    const upstream = upstreams.resolve(host)
    return { base: upstream.url, ...(upstream.credentials != null ? { credentials: upstream.credentials } : {}) }
  } catch (err) {
    if (err instanceof UnknownUpstreamError) {
      throw new HttpError(400, 'NAME_UNKNOWN', `${err.message}; prefetch images of the daemon's upstreams`)
    }
    throw err
  }
}
