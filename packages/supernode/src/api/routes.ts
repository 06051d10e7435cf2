import { API_PREFIX, HttpError, type Route } from '@shoal/core'

/**
 * The supernode's HTTP listener serves only what may be open (`/healthz`, `/metrics`,
 * `/api/v1/status`, from `commonRoutes`). The control plane moved to libp2p
 * (`/shoal/control/1.0.0`, cluster members only); the old HTTP control routes answer
 * 401 so a stale or foreign client learns why, and change nothing.
 */
export function apiRoutes (): Route[] {
  return [
    {
      methods: ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH'],
      pattern: new RegExp(`^${API_PREFIX}/(tasks|peers)(/.*)?$`),
      handler: async () => {
        throw new HttpError(401, 'UNAUTHORIZED', 'the control plane is served to cluster members only, over libp2p (/shoal/control/1.0.0) with the cluster key', {
          headers: { 'www-authenticate': 'libp2p-pnet' }
        })
      }
    }
  ]
}
