import { readFile } from 'node:fs/promises'
import { parseClusterKey } from '@shoal/core'
import { executorFor, type Executor } from '../exec/index.ts'
import { InventoryError } from '../errors.ts'
import type { Host, Inventory } from '../inventory/load.ts'
import type { Bundle } from './bundle-file.ts'
import { applyHost, describePlan, planHost, type HostOutcome } from './host-rollout.ts'

export interface RolloutOptions {
  bundle: Bundle
  /** Hosts rolled out per step. @default 1 */
  batch?: number
  /** Hosts of a step changed at once (their daemons restart): at most this many. @default batch */
  maxUnavailable?: number
  /** The rollout stops once more hosts than this failed. @default 0 */
  maxFailures?: number
  dryRun?: boolean
  signal?: AbortSignal
  /** Each host's progress and result, as text lines. */
  print: (text: string) => void
  /** For tests: how to reach a host. @default executorFor(host) */
  executor?: (host: Host) => Executor
}

export interface HostResult extends Omit<Partial<HostOutcome>, 'state'> {
  host: string
  state: HostOutcome['state'] | 'skipped' | 'planned'
}

/** Runs `fn` over `items` with at most `limit` at once. */
async function pool<T, R> (items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i] as T)
    }
  }))
  return results
}

/**
 * Brings the hosts to the inventory's desired state, `batch` hosts per step (at most
 * `maxUnavailable` of them changing at once), and stops after the step in which the
 * failures exceeded `maxFailures`; the hosts not reached are reported as skipped.
 */
export async function rollout (inventory: Inventory, hosts: Host[], options: RolloutOptions): Promise<HostResult[]> {
  let keyText: string
  try {
    keyText = await readFile(inventory.clusterKeyFile, 'utf8')
    parseClusterKey(keyText, inventory.clusterKeyFile)
  } catch (err) {
    throw new InventoryError(`clusterKeyFile ${inventory.clusterKeyFile}: ${(err as Error).message}`)
  }
  const clusterKey = Buffer.from(keyText)
  const batch = Math.max(1, options.batch ?? 1)
  const concurrency = Math.max(1, Math.min(batch, options.maxUnavailable ?? batch))
  const maxFailures = options.maxFailures ?? 0
  const results: HostResult[] = []
  let failures = 0
  for (let start = 0; start < hosts.length; start += batch) {
    if (failures > maxFailures) {
      results.push(...hosts.slice(start).map(h => ({ host: h.name, state: 'skipped' as const })))
      break
    }
    const step = hosts.slice(start, start + batch)
    const outcomes = await pool(step, concurrency, async (host): Promise<HostResult> => {
      const exec = (options.executor ?? executorFor)(host)
      try {
        const plan = await planHost(exec, inventory, host, options.bundle, clusterKey, options.signal != null ? { signal: options.signal } : {})
        if (options.dryRun === true) {
          options.print(describePlan(plan))
          return { host: host.name, state: plan.changed ? 'planned' : 'unchanged' }
        }
        if (plan.changed) {
          options.print(`${host.name}: changing (${plan.files.length} file(s)${plan.currentRelease !== plan.release ? `, release ${plan.release}` : ''}${plan.restart ? ', daemon (re)start' : ''})\n`)
        }
        const outcome = await applyHost(exec, inventory, plan, options.bundle, options.signal != null ? { signal: options.signal } : {})
        const result: HostResult = { host: host.name, ...outcome }
        options.print(outcome.state === 'failed'
          ? `${host.name}: FAILED: ${outcome.error ?? 'unknown'}${outcome.rolledBack === true ? ' (rolled back to what it had)' : ' (NOT rolled back: look at the host)'}\n`
          : `${host.name}: ${outcome.state}${outcome.notes.length > 0 ? `: ${outcome.notes.join('; ')}` : ''}\n`)
        return result
      } catch (err) {
        // could not even read the host: nothing was changed
        options.print(`${host.name}: FAILED before any change: ${(err as Error).message}\n`)
        return { host: host.name, state: 'failed', error: (err as Error).message, rolledBack: true, notes: [] }
      } finally {
        await exec.close()
      }
    })
    results.push(...outcomes)
    failures += outcomes.filter(o => o.state === 'failed').length
    if (failures > maxFailures && start + batch < hosts.length) {
      options.print(`stopping: ${failures} host(s) failed, more than --max-failures ${maxFailures}\n`)
    }
  }
  return results
}

/** One line: how many hosts ended how. */
export function summarize (results: HostResult[], dryRun: boolean): string {
  const count = (s: HostResult['state']): number => results.filter(r => r.state === s).length
  if (results.every(r => r.state === 'unchanged')) {
    return `${results.length} host(s) up to date: nothing changed\n`
  }
  if (dryRun) {
    return `dry run: ${count('planned')} host(s) would change, ${count('unchanged')} up to date; nothing was touched\n`
  }
  return `${results.length} host(s): ${count('changed')} changed, ${count('unchanged')} unchanged, ${count('failed')} failed, ${count('skipped')} skipped\n`
}
