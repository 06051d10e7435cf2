import cliProgress from 'cli-progress'

export interface ProgressSample {
  completed: number
  total: number | null
  /** Bytes by where they came from, when known. */
  bySource?: Record<string, number>
  /** What the bar says besides bytes (a state, a via). */
  note?: string
}

export interface ProgressReporter {
  update(sample: ProgressSample): void
  stop(): void
}

export interface ProgressInit {
  /** What is being fetched, for the plain lines. */
  label: string
  /** Where to draw. @default process.stderr */
  stream?: NodeJS.WriteStream
  /** Plain lines at most this often when not on a terminal. @default 2000 ms */
  lineInterval?: number
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB']

export function formatBytes (n: number): string {
  let v = n
  let u = 0
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024
    u++
  }
  return `${u === 0 ? v : v.toFixed(1)} ${UNITS[u]}`
}

function formatSources (bySource: Record<string, number> | undefined): string {
  if (bySource == null) {
    return ''
  }
  const parts = Object.entries(bySource).filter(([, n]) => n > 0).map(([s, n]) => `${s} ${formatBytes(n)}`)
  return parts.length === 0 ? '' : parts.join(', ')
}

/**
 * A progress bar (cli-progress) with bytes, rate, ETA and bytes by source when stderr
 * is a terminal; otherwise a plain line now and then and one at the end, which logs
 * and CI keep readably.
 */
export function createProgress (init: ProgressInit): ProgressReporter {
  const stream = init.stream ?? process.stderr
  const started = performance.now()
  const rate = (completed: number): number => completed / Math.max(0.001, (performance.now() - started) / 1000)
  if (stream.isTTY === true) {
    const bar = new cliProgress.SingleBar({
      stream,
      format: '{bar} {done}/{size} {rate}/s ETA {eta_formatted} {sources}',
      formatValue: (v) => String(v),
      hideCursor: true,
      etaBuffer: 20,
      fps: 5
    }, cliProgress.Presets.shades_classic)
    let started_ = false
    return {
      update (s) {
        const payload = { done: formatBytes(s.completed), size: s.total != null ? formatBytes(s.total) : '?', rate: formatBytes(Math.round(rate(s.completed))), sources: [formatSources(s.bySource), s.note ?? ''].filter(t => t !== '').join(' ') }
        if (!started_) {
          bar.start(Math.max(1, s.total ?? 0), s.completed, payload)
          started_ = true
          return
        }
        if (s.total != null) {
          bar.setTotal(Math.max(1, s.total))
        }
        bar.update(s.completed, payload)
      },
      stop () {
        if (started_) {
          bar.stop()
        }
      }
    }
  }
  const interval = init.lineInterval ?? 2_000
  let last = 0
  let lastSample: ProgressSample | undefined
  let printed: ProgressSample | undefined
  const line = (s: ProgressSample): void => {
    const pct = s.total != null && s.total > 0 ? ` (${Math.floor(s.completed * 100 / s.total)}%)` : ''
    const sources = formatSources(s.bySource)
    stream.write(`${init.label}: ${formatBytes(s.completed)}${s.total != null ? ` of ${formatBytes(s.total)}` : ''}${pct}, ${formatBytes(Math.round(rate(s.completed)))}/s${sources !== '' ? `; ${sources}` : ''}${s.note != null ? `; ${s.note}` : ''}\n`)
  }
  return {
    update (s) {
      lastSample = s
      const now = performance.now()
      if (now - last >= interval) {
        last = now
        printed = s
        line(s)
      }
    },
    stop () {
      if (lastSample != null && lastSample !== printed) {
        line(lastSample)
      }
    }
  }
}
