import { InvalidConfigError } from '@shoal/core'
import type { Host, Inventory } from './load.ts'

export interface HostSelector {
  /** Host names; each must exist. */
  hosts?: string[]
  /** A group name; it must exist. */
  group?: string
  /** Every label must match (k=v). */
  labels?: Record<string, string>
}

/**
 * The inventory's hosts that match every given criterion, in inventory order. No
 * criterion selects every host.
 *
 * @throws {InvalidConfigError} for an unknown host or group, or when nothing matches
 */
export function selectHosts (inventory: Pick<Inventory, 'hosts' | 'groups'>, selector: HostSelector = {}): Host[] {
  const known = new Set(inventory.hosts.map(h => h.name))
  const unknown = (selector.hosts ?? []).filter(h => !known.has(h))
  if (unknown.length > 0) {
    throw new InvalidConfigError(`--hosts: no host named ${unknown.join(', ')} in the inventory`)
  }
  if (selector.group != null && inventory.groups[selector.group] == null) {
    throw new InvalidConfigError(`--group: no group named ${selector.group} in the inventory (groups: ${Object.keys(inventory.groups).join(', ') || 'none'})`)
  }
  const selected = inventory.hosts.filter(h =>
    (selector.hosts == null || selector.hosts.includes(h.name)) &&
    (selector.group == null || (inventory.groups[selector.group] ?? []).includes(h.name)) &&
    Object.entries(selector.labels ?? {}).every(([k, v]) => h.labels[k] === v))
  if (selected.length === 0) {
    throw new InvalidConfigError('no host of the inventory matches --hosts, --group and --selector together')
  }
  return selected
}

/** Parses `k=v` selectors (`--selector rack=r1 --selector tier=web`). */
export function parseSelectors (list: string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const s of list) {
    const i = s.indexOf('=')
    if (i <= 0) {
      throw new InvalidConfigError(`--selector ${s}: must be label=value`)
    }
    labels[s.slice(0, i)] = s.slice(i + 1)
  }
  return labels
}
