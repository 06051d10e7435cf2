import { readFileSync } from 'node:fs'
import type { ManagedProcess } from '../../harness/processes.ts'

/**
 * Faults the fleet benchmark can inject into a Shoal run. Each kind says whom it hits
 * (`victims`) and how (`inject`); the moment is the same for all: see `awaitKillMoment`.
 * `kill-daemons` SIGKILLs a fraction of the hosts' daemons; `kill-supernode` runs Shoal
 * with two supernodes, every daemon given both, and SIGKILLs one of them
 * (`supernode-victim.ts` says which).
 */
export type FaultPlan = { kind: 'kill-daemons', fraction: number } | { kind: 'kill-supernode' }

/** Supernodes a Shoal run with this fault starts (and its fault-free baseline) */
export function supernodesFor (plan: FaultPlan | undefined): number {
  return plan?.kind === 'kill-supernode' ? 2 : 1
}

export interface FaultOutcome {
  kind: FaultPlan['kind']
  /** The plan, for the report */
  plan: FaultPlan
  /** What was (to be) killed, by name: hosts whose daemons, or the supernode */
  victims: string[]
  /** Why these victims (kill-supernode: the rendezvous ranking of the image's blobs) */
  choice?: string
  /** What decided the moment, and when it came (seconds since the pulls started; null: never) */
  trigger: string
  atSeconds: number | null
  /** Whether every victim was killed (false when the pulls ended before the moment came) */
  injected: boolean
  /** The victims' own pulls, which are expected to fail: never counted against the survivors */
  victimPulls: Array<{ host: string, seconds: number | null, error: string | undefined }>
}

export function faultLabel (plan: FaultPlan): string {
  return plan.kind === 'kill-daemons'
    ? `${Math.round(plan.fraction * 100)} % of daemons SIGKILLed`
    : '1 of 2 supernodes SIGKILLed'
}

/**
 * The hosts (indices into a fleet of `n`) whose daemons a `kill-daemons` fault kills:
 * round(fraction × n) of them, at least one and never all, spread evenly from the last
 * host down (every k-th host, k ≈ 1 ÷ fraction), so the choice is the same every run.
 */
export function daemonVictims (n: number, fraction: number): number[] {
  const count = Math.min(n - 1, Math.max(1, Math.round(fraction * n)))
  const out: number[] = []
  for (let j = 0; j < count; j++) {
    out.push(n - 1 - Math.floor(j * n / count))
  }
  return out.sort((a, b) => a - b)
}

/** Bytes received on eth0 of the network namespace process `pid` runs in; null when it is gone. */
export function namespaceRxBytes (pid: number | undefined): number | null {
  if (pid == null) {
    return null
  }
  try {
    const dev = readFileSync(`/proc/${pid}/net/dev`, 'utf8')
    const fields = /^\s*eth0:\s*(\d+)/m.exec(dev)
    return fields == null ? null : Number(fields[1])
  } catch {
    return null
  }
}

export interface KillMomentOptions {
  /** One process per host (its daemon): its namespace's eth0 counts what the host received */
  pids: Array<number | undefined>
  /** Bytes a host must have received: a third of the image */
  threshold: number
  /** Give up at this many milliseconds (the pulls' own timeout) */
  deadlineMs: number
  /** True once every pull has ended: then the moment never comes */
  ended: () => boolean
  signal: AbortSignal
  pollMs?: number
}

export const KILL_MOMENT = 'the first host has received a third of the image on its link'

/**
 * Waits for the kill moment: the first host to have received a third of the image
 * (bytes on its link since the pulls started, headers included, so "about" a third).
 * A moment read from the hosts rather than a fixed delay: the same point in the pull
 * whatever the machine's load, and sure to come while the pulls are under way.
 * Resolves the seconds it took, or null when the pulls ended, the deadline passed or
 * the run was interrupted first. Bounded by `deadlineMs`.
 */
export async function awaitKillMoment (options: KillMomentOptions): Promise<number | null> {
  const started = performance.now()
  const base = options.pids.map(pid => namespaceRxBytes(pid) ?? 0)
  const pollMs = options.pollMs ?? 50
  for (let i = 0; i <= Math.ceil(options.deadlineMs / pollMs); i++) {
    if (options.ended() || options.signal.aborted) {
      return null
    }
    const reached = options.pids.some((pid, h) => (namespaceRxBytes(pid) ?? 0) - base[h]! >= options.threshold)
    if (reached) {
      return (performance.now() - started) / 1000
    }
    await new Promise(resolve => setTimeout(resolve, pollMs))
  }
  return null
}

/** SIGKILLs the victims' processes at once and waits until each has exited (reaped). */
export async function killAll (procs: ManagedProcess[]): Promise<void> {
  await Promise.all(procs.map(async p => { await p.kill('SIGKILL') }))
}
