import { executorFor, type Executor } from '../exec/index.ts'
import { sh } from '../exec/index.ts'
import { PATHS } from '../constants.ts'
import type { Host } from '../inventory/load.ts'
import { hostPath, localDaemonUrl, mirroredRegistries } from '../rollout/desired.ts'
import { bytesBySource, hostGet, parseMetrics } from './probe.ts'

export interface HostStatus {
  host: string
  version: string | null
  healthy: boolean
  error?: string
  /** Bytes of layers and pieces the daemon keeps (`shoal_dfget_disk_bytes`). */
  cacheBytes: number | null
  /** Per runtime: whether its config file points at the mirror. */
  mirror: Record<string, boolean>
  /**
   * Bytes into the host by source over the last hour (the daemon's own readings of its
   * counters, `lastHour` in its `/api/v1/status`); from an older daemon without them, the
   * counters since it started.
   */
  bytesBySource: Record<string, number>
  /** Seconds `bytesBySource` covers: up to an hour; null when they are counters since the start. */
  bytesWindow: number | null
  /** Seconds since the daemon started. */
  uptime: number | null
}

/** Whether each runtime's config file on the host sends pulls to the mirror. */
async function mirrorConfigured (exec: Executor, host: Host, signal?: AbortSignal): Promise<Record<string, boolean>> {
  const mirror = localDaemonUrl(host)
  const out: Record<string, boolean> = {}
  const so = signal != null ? { signal } : {}
  if (host.runtimes.includes('dockerd')) {
    const res = await exec.run(`cat ${sh(hostPath(host, PATHS.dockerDaemonJson))}`, so)
    let ok = false
    try {
      const mirrors = (JSON.parse(res.stdout) as { 'registry-mirrors'?: unknown })['registry-mirrors']
      ok = Array.isArray(mirrors) && mirrors.some(m => String(m).replace(/\/+$/, '') === mirror)
    } catch {}
    out.dockerd = res.code === 0 && ok
  }
  if (host.runtimes.includes('containerd')) {
    const files = mirroredRegistries(host).map(r => hostPath(host, `${PATHS.containerdCertsD}/${r.name}/hosts.toml`))
    const res = await exec.run(files.map(f => `grep -qF ${sh(`[host."${mirror}"]`)} ${sh(f)}`).join(' && '), so)
    out.containerd = res.code === 0
  }
  return out
}

export async function hostStatus (exec: Executor, host: Host, options: { signal?: AbortSignal } = {}): Promise<HostStatus> {
  const url = localDaemonUrl(host)
  const [health, status, metrics, mirror] = [
    await hostGet(exec, `${url}/healthz`, options),
    await hostGet(exec, `${url}/api/v1/status`, options),
    await hostGet(exec, `${url}/metrics`, options),
    await mirrorConfigured(exec, host, options.signal)
  ]
  let version: string | null = null
  let uptime: number | null = null
  let lastHour: { windowSeconds: number, bytesBySource: Record<string, number> } | undefined
  try {
    const s = JSON.parse(status.body) as { version?: string, startedAt?: string, lastHour?: typeof lastHour }
    version = s.version ?? null
    uptime = s.startedAt != null ? Math.round((Date.now() - Date.parse(s.startedAt)) / 1000) : null
    lastHour = s.lastHour
  } catch {}
  const samples = parseMetrics(metrics.ok ? metrics.body : '')
  return {
    host: host.name,
    version,
    healthy: health.ok,
    ...(health.ok ? {} : { error: health.error }),
    cacheBytes: samples.get('shoal_dfget_disk_bytes') ?? null,
    mirror,
    bytesBySource: lastHour?.bytesBySource ?? bytesBySource(samples),
    bytesWindow: lastHour?.windowSeconds ?? null,
    uptime
  }
}

/** Every host's status, at most 8 hosts asked at once. */
export async function fleetStatus (hosts: Host[], options: { signal?: AbortSignal, executor?: (h: Host) => Executor } = {}): Promise<HostStatus[]> {
  const results: HostStatus[] = []
  for (let i = 0; i < hosts.length; i += 8) {
    results.push(...await Promise.all(hosts.slice(i, i + 8).map(async host => {
      const exec = (options.executor ?? executorFor)(host)
      try {
        return await hostStatus(exec, host, options)
      } catch (err) {
        return { host: host.name, version: null, healthy: false, error: (err as Error).message, cacheBytes: null, mirror: {}, bytesBySource: {}, bytesWindow: null, uptime: null }
      } finally {
        await exec.close()
      }
    })))
  }
  return results
}

const mb = (n: number | null | undefined): string => n == null ? '-' : `${(n / 1048576).toFixed(1)}M`

function duration (s: number | null): string {
  if (s == null) return '-'
  return s < 3600 ? `${Math.floor(s / 60)}m` : `${(s / 3600).toFixed(1)}h`
}

/** A table, one host per line. */
export function formatStatus (list: HostStatus[]): string {
  const rows = [['HOST', 'VERSION', 'HEALTH', 'CACHE', 'MIRROR', 'UP', 'LOCAL', 'PEER', 'SUPERNODE', 'ORIGIN']]
  for (const s of list) {
    rows.push([
      s.host, s.version ?? '-', s.healthy ? 'ok' : `DOWN${s.error != null ? ` (${s.error.slice(0, 60)})` : ''}`, mb(s.cacheBytes),
      Object.entries(s.mirror).map(([r, ok]) => `${r}:${ok ? 'yes' : 'NO'}`).join(',') || '-',
      duration(s.uptime), mb(s.bytesBySource.local), mb(s.bytesBySource.peer), mb(s.bytesBySource.supernode), mb(s.bytesBySource.origin)
    ])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map(r => (r[i] ?? '').length)))
  return `${rows.map(r => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')}\n` +
    'bytes by source: over the last hour, as each daemon reads its counters once a minute (less while UP < 60m; since the start for daemons that do not report it)\n'
}
