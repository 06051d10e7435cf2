import { UnknownUpstreamError } from '../errors.ts'
import type { InterceptedHosts } from './proxy-server.ts'
import type { Upstreams } from '../mirror/upstreams.ts'

/**
 * The registries the proxy intercepts: every upstream of the mirror (`--registry` and
 * `upstreams`), by the name image references give it; Docker Hub under any of its names.
 */
export function upstreamHosts (upstreams: Pick<Upstreams, 'resolve'>): InterceptedHosts {
  return {
    has: (name) => {
      if (name === '') {
        return false
      }
      try {
        upstreams.resolve(name)
        return true
      } catch (err) {
        if (err instanceof UnknownUpstreamError) {
          return false
        }
        throw err
      }
    }
  }
}
