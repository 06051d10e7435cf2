import { InvalidConfigError } from '@shoal/core'
import type { Executor } from '../exec/index.ts'

/** A daemon to prefetch on. */
export interface PrefetchHost {
  /** Shown in progress and the table */
  name: string
  /** The daemon's HTTP address, such as http://10.0.0.5:65001 */
  url: string
  /**
   * When set, the daemon is asked from the host itself (curl over this executor, to
   * `url` on the host's loopback), so its API need not be reachable from the controller.
   */
  exec?: Executor
  idc?: string
  /** `|`-separated from wide to narrow, such as `eu|fra|rack7` (shared contract 3) */
  location?: string
}

export interface HostShare {
  /** Percent of the hosts, 1–100, rounded up. */
  percent?: number
  /** Number of hosts. */
  count?: number
}

/**
 * Picks a share of the hosts spread across idc and location: the picks go round the
 * widest level first (one per idc), then the next (one per zone, one per rack) before
 * any second host of the same place. Without a share, every host.
 */
export function selectHosts (hosts: PrefetchHost[], share: HostShare = {}): PrefetchHost[] {
  if (share.percent != null && share.count != null) {
    throw new InvalidConfigError('give --percent or --count, not both')
  }
  let n = hosts.length
  if (share.percent != null) {
    if (!Number.isFinite(share.percent) || share.percent <= 0 || share.percent > 100) {
      throw new InvalidConfigError(`--percent must be a number above 0 and at most 100, not ${share.percent}`)
    }
    n = Math.ceil(hosts.length * share.percent / 100)
  } else if (share.count != null) {
    if (!Number.isSafeInteger(share.count) || share.count < 1) {
      throw new InvalidConfigError(`--count must be a whole number of at least 1, not ${share.count}`)
    }
    n = Math.min(share.count, hosts.length)
  }
  return spread(hosts.map(h => ({ host: h, path: placePath(h) })), 0).slice(0, n)
}

function placePath (host: PrefetchHost): string[] {
  return [host.idc ?? '', ...(host.location ?? '').split('|')].map(s => s.trim())
}

/** Orders hosts so that consecutive ones differ at the widest level they can. */
function spread (entries: Array<{ host: PrefetchHost, path: string[] }>, level: number): PrefetchHost[] {
  const deepest = Math.max(0, ...entries.map(e => e.path.length))
  if (entries.length <= 1 || level >= deepest) {
    return entries.map(e => e.host).sort((a, b) => a.name.localeCompare(b.name))
  }
  const groups = new Map<string, Array<{ host: PrefetchHost, path: string[] }>>()
  for (const entry of entries) {
    const key = entry.path[level] ?? ''
    groups.set(key, [...(groups.get(key) ?? []), entry])
  }
  const ordered = [...groups.keys()].sort().map(key => spread(groups.get(key) ?? [], level + 1))
  // round robin over the groups; bounded by the number of hosts
  const out: PrefetchHost[] = []
  for (let i = 0; out.length < entries.length; i++) {
    for (const group of ordered) {
      const host = group[i]
      if (host != null) {
        out.push(host)
      }
    }
  }
  return out
}
