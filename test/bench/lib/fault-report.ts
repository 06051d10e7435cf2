import { faultLabel, type FaultPlan } from './faults.ts'
import type { ModeRun } from './fleet.ts'
import { distribution, type Distribution } from './stats.ts'

/**
 * A fault run against the fault-free run of the same size: the survivors' completion
 * (the hosts the fault did not hit; every host in the fault-free run) against the ideal
 * and against the fault-free run, and what the origin and the daemons did.
 */
export interface FaultSummary {
  label: string
  plan: FaultPlan
  hosts: number
  /** Hosts the fault hit, by name, and whether it was injected at all */
  killed: string[]
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
  faultFree: { seconds: Distribution | null, failed: number }
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
    injected: fault.injected,
    atSeconds: fault.atSeconds,
    survivors: faulty.hosts - fault.victims.length,
    survivorsFailed: faulty.failures.length,
    seconds,
    ratioToIdeal: seconds == null ? null : { p50: seconds.p50 / ideal, p99: seconds.p99 / ideal },
    ratioToFaultFree: seconds == null || base == null ? null : { p50: seconds.p50 / base.p50, p99: seconds.p99 / base.p99 },
    faultFree: { seconds: base, failed: faultFree.failures.length },
    originEgressBytes: faulty.originEgressBytes,
    originEgressRatio: faulty.originEgressBytes / imageBytes,
    originBlobGets: faulty.originBlobGets,
    backToSource: faulty.shoal?.backToSource ?? {},
    backToSourceTotal: sum(faulty.shoal?.backToSource),
    faultFreeBackToSourceTotal: sum(faultFree.shoal?.backToSource)
  }
}

/** Rows for the text table: the fault-free run, then each fault run, on the same fleet. */
export function faultRows (summaries: FaultSummary[], faultFree: ModeRun, ideal: number, imageBytes: number): string[][] {
  const rows = [['Shoal run', 'hosts', 'killed', 'survivors', 'p50 s', 'p99 s', 'p99 ÷ ideal', 'p99 ÷ fault-free', 'origin egress ÷ image', 'origin blob GETs', 'back to source', 'survivors failed']]
  const base = doneSeconds(faultFree)
  const cells = (d: Distribution | null): string[] => d == null ? ['-', '-', '-'] : [d.p50.toFixed(1), d.p99.toFixed(1), (d.p99 / ideal).toFixed(2)]
  rows.push(['fault-free', String(faultFree.hosts), '0', String(faultFree.hosts), ...cells(base), '1.00',
    (faultFree.originEgressBytes / imageBytes).toFixed(2), String(faultFree.originBlobGets), String(sum(faultFree.shoal?.backToSource)), String(faultFree.failures.length)])
  for (const s of summaries) {
    rows.push([s.injected ? s.label : `${s.label} (NOT injected)`, String(s.hosts), String(s.killed.length), String(s.survivors), ...cells(s.seconds),
      s.ratioToFaultFree == null ? '-' : s.ratioToFaultFree.p99.toFixed(2),
      s.originEgressRatio.toFixed(2), String(s.originBlobGets), String(s.backToSourceTotal), String(s.survivorsFailed)])
  }
  return rows
}
