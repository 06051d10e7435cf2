import { HttpError, isDockerHub } from '@shoal/core'

/**
 * The base URL of the upstream an image reference's registry host names. With one
 * upstream (`--registry`), that is its own host, or any Docker Hub name when it is
 * Docker Hub; other hosts are refused (a 400 naming the host).
 *
 * One function on purpose: with several upstreams (`Upstreams.resolve`) it is the
 * lookup by name instead.
 */
export function registryBaseFor (host: string, registry: string): string {
  const upstream = new URL(registry)
  const base = `${upstream.origin}${upstream.pathname.replace(/\/+$/, '')}`
  if (host.toLowerCase() === upstream.host.toLowerCase() || (isDockerHub(host) && isDockerHub(upstream.hostname))) {
    return base
  }
  throw new HttpError(400, 'NAME_UNKNOWN', `registry ${host} is not this daemon's upstream (${upstream.host}); prefetch images of ${isDockerHub(upstream.hostname) ? 'docker.io' : upstream.host}`)
}
