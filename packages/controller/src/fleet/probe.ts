import { PATHS } from '../constants.ts'
import { sh, type Executor } from '../exec/index.ts'
import type { Host } from '../inventory/load.ts'
import { hostPath } from '../rollout/desired.ts'

/** GET from the host itself (the daemon usually listens on loopback only). */
export async function hostGet (exec: Executor, url: string, options: { signal?: AbortSignal } = {}): Promise<{ ok: boolean, body: string, error: string }> {
  const res = await exec.run(`curl -fsS -m 5 ${sh(url)}`, { timeout: 15_000, ...options })
  return { ok: res.code === 0, body: res.stdout, error: res.stderr.trim() }
}

export type Samples = Map<string, number>

/** Prometheus text exposition → `name{labels}` → value (labels as written). */
export function parseMetrics (text: string): Samples {
  const samples: Samples = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue
    }
    const i = line.lastIndexOf(' ')
    samples.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return samples
}

export const BYTE_SOURCES = ['local', 'peer', 'supernode', 'origin'] as const

/** `shoal_dfget_download_bytes_total` by source. */
export function bytesBySource (samples: Samples): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [key, value] of samples) {
    const m = /^shoal_dfget_download_bytes_total\{source="([^"]+)"\}$/.exec(key)
    if (m?.[1] != null) {
      out[m[1]] = value
    }
  }
  return out
}

/** Whether a TCP connection from the host to address:port opens within 3 s (the bundled node does the dial: no nc or bash needed). */
export async function tcpReachable (exec: Executor, host: Host, address: string, port: number, options: { signal?: AbortSignal } = {}): Promise<boolean> {
  const node = hostPath(host, `${PATHS.current}/bin/node`)
  const js = `const s=require('net').connect(${port},${JSON.stringify(address)});s.setTimeout(3000);s.on('connect',()=>process.exit(0));s.on('error',()=>process.exit(1));s.on('timeout',()=>process.exit(1))`
  const res = await exec.run(`${sh(node)} -e ${sh(js)}`, { timeout: 10_000, ...options })
  return res.code === 0
}

/** host and TCP port of a multiaddr (/ip4|ip6|dns4|dns6|dns/<host>/tcp/<port>...) or http(s) URL. */
export function tcpTarget (address: string): { host: string, port: number } | undefined {
  const m = /^\/(?:ip4|ip6|dns4|dns6|dns)\/([^/]+)\/tcp\/(\d+)/.exec(address)
  if (m?.[1] != null && m[2] != null) {
    return { host: m[1], port: Number(m[2]) }
  }
  try {
    const u = new URL(address)
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port !== '' ? u.port : u.protocol === 'https:' ? 443 : 80) }
  } catch {
    return undefined
  }
}
