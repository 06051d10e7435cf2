import { faultLabel, type FaultPlan } from './faults.ts'
import type { ModeRun } from './fleet.ts'
import { distribution, type Distribution } from './stats.ts'

/**
 * A fault run against the fault-free run of the same size (and the same number of
 * supernodes): the survivors' completion (the hosts the fault did not hit: all of them
 * when it kills a supernode; every host in the fault-free run) against the ideal and
 * against the fault-free run, and what the origin and the daemons did.
 */
export interface FaultSummary {
  label: string
  plan: FaultPlan
  hosts: number
  /** What the fault killed (hosts' daemons or a supernode), by name, and whether it was injected at all */
  killed: string[]
  /** Why those (kill-supernode: which supernode, and why that one) */
  choice?: string
  injected: boolean
  /** Seconds since the pulls started when the fault was injected */
  atSeconds: number | null
  survivors: number
  /** Survivors whose pull failed: what the fault cost beyond its victims (the target is 0) */
  survivorsFailed: number
  /** The survivors' completion, seconds, ÷ ideal and ÷ the fault-free run's */
  seconds: Distribution | null
  ratioToIdeal: { p50: number, p99: number } | null
  ratioToFaultFree: { p50: number, p99: number } | null
  faultFree: { supernodes: number, seconds: Distribution | null, failed: number }
  originEgressBytes: number
  originEgressRatio: number
  originBlobGets: number
  /** The survivors' back-to-source fetches by reason, and their total */
  backToSource: Record<string, number>
  backToSourceTotal: number
  faultFreeBackToSourceTotal: number
}

const doneSeconds = (run: ModeRun): Distribution | null => {
  const done = run.seconds.filter((s): s is number => s != null)
  return done.length > 0 ? distribution(done) : null
}
const sum = (r: Record<string, number> | undefined): number => Object.values(r ?? {}).reduce((a, b) => a + b, 0)

export function summarizeFault (faulty: ModeRun, faultFree: ModeRun, ideal: number, imageBytes: number): FaultSummary {
  const fault = faulty.fault
  if (fault == null) {
    throw new Error('summarizeFault: a run without a fault')
  }
  const seconds = doneSeconds(faulty)
  const base = doneSeconds(faultFree)
  return {
    label: faultLabel(fault.plan),
    plan: fault.plan,
    hosts: faulty.hosts,
    killed: fault.victims,
    ...(fault.choice != null ? { choice: fault.choice } : {}),
    injected: fault.injected,
    atSeconds: fault.atSeconds,
    survivors: faulty.hosts - fault.victimPulls.length,
    survivorsFailed: faulty.failures.length,
    seconds,
    ratioToIdeal: seconds == null ? null : { p50: seconds.p50 / ideal, p99: seconds.p99 / ideal },
    ratioToFaultFree: seconds == null || base == null ? null : { p50: seconds.p50 / base.p50, p99: seconds.p99 / base.p99 },
    faultFree: { supernodes: faultFree.supernodes ?? 1, seconds: base, failed: faultFree.failures.length },
    originEgressBytes: faulty.originEgressBytes,
    originEgressRatio: faulty.originEgressBytes / imageBytes,
    originBlobGets: faulty.originBlobGets,
    backToSource: faulty.shoal?.backToSource ?? {},
    backToSourceTotal: sum(faulty.shoal?.backToSource),
    faultFreeBackToSourceTotal: sum(faultFree.shoal?.backToSource)
  }
}

/** Rows for the text table: the fault-free runs (by supernodes), then each fault run, on the same fleet. */
export function faultRows (summaries: FaultSummary[], faultFree: ModeRun[], ideal: number, imageBytes: number): string[][] {
  const rows = [['Shoal run', 'supernodes', 'hosts', 'killed', 'survivors', 'p50 s', 'p99 s', 'p50 ÷ ideal', 'p99 ÷ ideal', 'p50 ÷ fault-free', 'p99 ÷ fault-free', 'origin egress ÷ image', 'origin blob GETs', 'back to source', 'survivors failed']]
  const cells = (d: Distribution | null): string[] => d == null ? ['-', '-', '-', '-'] : [d.p50.toFixed(1), d.p99.toFixed(1), (d.p50 / ideal).toFixed(2), (d.p99 / ideal).toFixed(2)]
  for (const run of faultFree) {
    rows.push(['fault-free', String(run.supernodes ?? 1), String(run.hosts), '-', String(run.hosts), ...cells(doneSeconds(run)), '1.00', '1.00',
      (run.originEgressBytes / imageBytes).toFixed(2), String(run.originBlobGets), String(sum(run.shoal?.backToSource)), String(run.failures.length)])
  }
  for (const s of summaries) {
    rows.push([s.injected ? s.label : `${s.label} (NOT injected)`, String(s.plan.kind === 'kill-supernode' ? 2 : s.faultFree.supernodes), String(s.hosts), s.killed.join(' '), String(s.survivors), ...cells(s.seconds),
      s.ratioToFaultFree == null ? '-' : s.ratioToFaultFree.p50.toFixed(2),
      s.ratioToFaultFree == null ? '-' : s.ratioToFaultFree.p99.toFixed(2),
      s.originEgressRatio.toFixed(2), String(s.originBlobGets), String(s.backToSourceTotal), String(s.survivorsFailed)])
  }
  return rows
}
