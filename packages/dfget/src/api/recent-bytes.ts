import { RECENT_BYTES_INTERVAL_MS, RECENT_BYTES_WINDOW_MS } from '../constants.ts'

export interface RecentBytesInit {
  /** How often the counters are read. @default 60000 ms ({@link RECENT_BYTES_INTERVAL_MS}) */
  interval?: number
  /** The window reported. @default 3600000 ms ({@link RECENT_BYTES_WINDOW_MS}) */
  window?: number
}

export interface RecentBytesComponents {
  /** The counters' values now, by source (`shoal_dfget_download_bytes_total`). */
  read: () => Promise<Record<string, number>>
  /** @default Date.now */
  now?: () => number
}

export interface RecentBytesReport {
  /** Seconds the figures cover: the window, or less while the daemon is younger. */
  windowSeconds: number
  bytesBySource: Record<string, number>
}

interface Snapshot { at: number, bytes: Record<string, number> }

/**
 * Bytes by source over the last hour, for `/api/v1/status` (and `dfctl status`): the
 * counters only say "since start", and a status call has no history to subtract. The
 * counters are read once a minute and kept for the window (61 readings), so the answer
 * is exact to within one interval, without Prometheus.
 */
export class RecentBytes {
  private readonly read: () => Promise<Record<string, number>>
  private readonly now: () => number
  private readonly interval: number
  private readonly window: number
  /** Oldest first; bounded by window ÷ interval + 2. */
  private readonly snapshots: Snapshot[] = []
  private timer?: NodeJS.Timeout

  constructor (components: RecentBytesComponents, init: RecentBytesInit = {}) {
    this.read = components.read
    this.now = components.now ?? Date.now
    this.interval = init.interval ?? RECENT_BYTES_INTERVAL_MS
    this.window = init.window ?? RECENT_BYTES_WINDOW_MS
  }

  /** Readings kept (bounded by window ÷ interval + 2). */
  get readings (): number {
    return this.snapshots.length
  }

  async start (): Promise<void> {
    await this.sample()
    this.timer = setInterval(() => { void this.sample().catch(() => {}) }, this.interval)
    this.timer.unref()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  /** Reads the counters once more; the readings older than the window (but one) are dropped. */
  async sample (): Promise<void> {
    const bytes = await this.read()
    const at = this.now()
    this.snapshots.push({ at, bytes })
    // keep the newest reading at or before the window's start: the base to subtract
    while (this.snapshots.length > 1 && (this.snapshots[1]?.at ?? at) <= at - this.window) {
      this.snapshots.shift()
    }
    const bound = Math.ceil(this.window / this.interval) + 2
    while (this.snapshots.length > bound) {
      this.snapshots.shift()
    }
  }

  /**
   * What arrived from the oldest reading kept (about a window ago, or the start while the
   * daemon is younger) until now.
   */
  async report (): Promise<RecentBytesReport> {
    const now = await this.read()
    const at = this.now()
    const base = this.snapshots[0]
    if (base == null) {
      return { windowSeconds: 0, bytesBySource: {} }
    }
    const bytesBySource: Record<string, number> = {}
    for (const [source, value] of Object.entries(now)) {
      bytesBySource[source] = Math.max(0, value - (base.bytes[source] ?? 0))
    }
    return { windowSeconds: Math.round((at - base.at) / 1000), bytesBySource }
  }
}
