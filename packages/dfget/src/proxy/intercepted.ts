import type { InterceptedHosts } from './proxy-server.ts'

/** The names Docker Hub goes by in image references and on the wire. */
const DOCKER_HUB = ['docker.io', 'index.docker.io', 'registry-1.docker.io']

/**
 * The registries the proxy intercepts when only `--registry` is configured: its host
 * (with the port when not the scheme's default), and Docker Hub's aliases of each other.
 */
export function registryHosts (registry: string): InterceptedHosts {
  const host = new URL(registry).host.toLowerCase()
  const names = new Set(DOCKER_HUB.includes(host) ? DOCKER_HUB : [host])
  return { has: (name) => names.has(name.toLowerCase()) }
}
