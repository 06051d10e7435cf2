import cliProgress from 'cli-progress'
import { formatDuration, type PrefetchResult, type TargetStatus } from './prefetch.ts'

export interface Reporter {
  update: (status: TargetStatus) => void
  /** Ends live output (bars) before the table is printed. */
  stop: () => void
}

export function formatBytes (n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = n
  let unit = 0
  // bounded by the units
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`
}

const label = (s: TargetStatus): string => s.kind === 'supernode' ? `preheat ${s.name}` : s.name

const sources = (s: TargetStatus): string =>
  (['peer', 'supernode', 'origin', 'local'] as const).map(k => `${k} ${formatBytes(s.bytesBySource[k])}`).join(', ')

/** Not a terminal: one line per target each time its state changes. */
export function lineReporter (stream: NodeJS.WritableStream): Reporter {
  const seen = new Map<string, string>()
  return {
    update (s) {
      const key = `${s.kind} ${s.name}`
      if (seen.get(key) === s.state) {
        return
      }
      seen.set(key, s.state)
      const detail = s.state === 'succeeded'
        ? ` ${formatBytes(s.completedBytes)} in ${formatDuration(s.durationMs)} (${sources(s)})`
        : s.state === 'failed' ? `: ${s.error ?? 'no reason given'}` : ''
      stream.write(`${label(s)} ${s.state}${detail}\n`)
    },
    stop () {}
  }
}

/** A terminal: one live bar per target with bytes, rate and state. */
export function barReporter (stream: NodeJS.WritableStream): Reporter {
  const multibar = new cliProgress.MultiBar({
    stream: stream as NodeJS.WriteStream,
    // the state before the bar: a narrow terminal cuts the end of the line, not the state
    format: '{name} {state} [{bar}] {percentage}% {done} / {size} {rate}/s{error}',
    hideCursor: true,
    clearOnComplete: false,
    stopOnComplete: false,
    forceRedraw: true,
    autopadding: true,
    barsize: 24,
    // --progress bars asked for bars where there is no terminal (a CI log): redraw each second
    noTTYOutput: true,
    notTTYSchedule: 1000
  }, cliProgress.Presets.shades_classic)
  const bars = new Map<string, cliProgress.SingleBar>()
  const width = { name: 0 }
  return {
    update (s) {
      const key = `${s.kind} ${s.name}`
      width.name = Math.max(width.name, label(s).length)
      const payload = {
        name: label(s).padEnd(width.name),
        done: formatBytes(s.completedBytes),
        size: s.totalBytes == null ? '?' : formatBytes(s.totalBytes),
        rate: formatBytes(s.durationMs > 0 ? Math.round(s.completedBytes * 1000 / s.durationMs) : 0),
        state: s.state.padEnd(9),
        error: s.state === 'failed' ? ` ${s.error ?? ''}` : ''
      }
      // a bar's total must be positive; an unknown size shows as 0 %
      const total = Math.max(1, s.totalBytes ?? s.completedBytes)
      let bar = bars.get(key)
      if (bar == null) {
        bar = multibar.create(total, s.completedBytes, payload)
        bars.set(key, bar)
      } else {
        bar.setTotal(total)
        bar.update(s.completedBytes, payload)
      }
    },
    stop () { multibar.stop() }
  }
}

/** The final table: host, state, bytes, time, bytes by source, and why a host failed. */
export function renderTable (result: PrefetchResult): string {
  const header = ['HOST', 'STATE', 'BYTES', 'TIME', 'PEER', 'SUPERNODE', 'ORIGIN', 'LOCAL', 'ERROR']
  const rows = [...result.preheat, ...result.hosts].map(s => [
    label(s), s.state, formatBytes(s.completedBytes), formatDuration(s.durationMs),
    formatBytes(s.bytesBySource.peer), formatBytes(s.bytesBySource.supernode), formatBytes(s.bytesBySource.origin), formatBytes(s.bytesBySource.local),
    s.error ?? ''
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  return [header, ...rows].map(r => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n') + '\n'
}

/** `--json`: the whole result, bytes as numbers. */
export function renderJson (result: PrefetchResult): string {
  const target = (s: TargetStatus): Record<string, unknown> => ({
    name: s.name, url: s.url, state: s.state, ...(s.error != null ? { error: s.error } : {}),
    totalBytes: s.totalBytes, completedBytes: s.completedBytes, durationMs: s.durationMs,
    bytesBySource: s.bytesBySource, jobs: s.jobs
  })
  return JSON.stringify({ ok: result.ok, images: result.images, preheat: result.preheat.map(target), hosts: result.hosts.map(target) }, null, 2) + '\n'
}
