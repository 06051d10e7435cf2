import { PATHS } from '../constants.ts'
import { sh, type Executor } from '../exec/index.ts'
import type { Host } from '../inventory/load.ts'
import { hostPath, mirroredRegistries } from './desired.ts'
import { runChecked } from './host-files.ts'

/**
 * dockerd through the daemon's HTTPS proxy (docs/runtimes.md): when the daemon's
 * settings set `proxyListen`, a host running dockerd gets the proxy in dockerd's
 * environment (a systemd drop-in) and the daemon's proxy CA as
 * `/etc/docker/certs.d/<registry>/ca.crt` for each registry the proxy intercepts.
 */

/** Hosts dockerd must reach directly, never through the proxy. */
export const DOCKER_NO_PROXY = 'localhost,127.0.0.0/8,::1'

/** The proxy's URL as dockerd on the host reaches it, or undefined when the daemon runs no proxy (or the host no dockerd). */
export function dockerProxyUrl (host: Pick<Host, 'daemon' | 'runtimes'>): string | undefined {
  const listen = host.daemon.proxyListen
  if (typeof listen !== 'string' || listen === '' || !host.runtimes.includes('dockerd')) {
    return undefined
  }
  const i = listen.lastIndexOf(':')
  let name = listen.slice(0, i)
  // a wildcard listener is reached on loopback
  if (name === '0.0.0.0' || name === '' || name === '[::]' || name === '::') {
    name = '127.0.0.1'
  }
  return `http://${name}:${listen.slice(i + 1)}`
}

/** The systemd drop-in that starts dockerd with the proxy. */
export function dockerProxyDropIn (proxy: string): string {
  return [
    '# written by dfctl rollout: dockerd pulls private registries through the Shoal proxy',
    '[Service]',
    `Environment="HTTPS_PROXY=${proxy}"`,
    `Environment="HTTP_PROXY=${proxy}"`,
    `Environment="NO_PROXY=${DOCKER_NO_PROXY}"`,
    ''
  ].join('\n')
}

/** What whoever starts dockerd must give it, where the rollout cannot (no systemd). */
export function dockerProxyEnvironment (proxy: string): string {
  return `HTTPS_PROXY=${proxy} HTTP_PROXY=${proxy} NO_PROXY=${DOCKER_NO_PROXY}`
}

/** The daemon's proxy CA certificate on the host (contract 2: `<dataDir>/proxy/ca.crt`). */
export function proxyCaPath (host: Pick<Host, 'daemon' | 'root'>): string {
  const dataDir = typeof host.daemon.dataDir === 'string' ? host.daemon.dataDir : hostPath(host, PATHS.dataDir)
  return `${dataDir}/proxy/ca.crt`
}

/**
 * `/etc/docker/certs.d/<registry>/ca.crt` (before the root prefix) for each registry the
 * proxy intercepts: the daemon's `registry` and every `upstreams` name. Docker Hub is
 * left out: dockerd trusts only the OS store for it.
 */
export function dockerCaFiles (host: Pick<Host, 'daemon'>): string[] {
  return mirroredRegistries(host).filter(r => r.name !== 'docker.io').map(r => `${PATHS.dockerCertsD}/${r.name}/ca.crt`)
}

/**
 * Restarts dockerd under systemd so it takes a changed environment (a reload does not),
 * when it runs; `systemctl daemon-reload` first, always.
 */
export async function restartDockerdUnit (exec: Executor, options: { signal?: AbortSignal } = {}): Promise<boolean> {
  const out = await runChecked(exec, `systemctl daemon-reload && if systemctl is-active --quiet ${sh('docker')}; then systemctl restart docker && echo restarted; fi`, 'restarting dockerd (systemd)', options)
  return out.includes('restarted')
}
