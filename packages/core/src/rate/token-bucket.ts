/**
 * Defaults of {@link TokenBucket} and the `--download-rate` / `--upload-rate` flags, in
 * one place so the flags' help, the Init docs and the code cannot disagree.
 */

/** Bytes per second; 0 is no limit. */
export const DEFAULT_RATE = 0

/**
 * The bucket holds this many seconds of its rate: an idle link may send that much at
 * once, then the rate holds. 1 s.
 */
export const DEFAULT_BURST_SECONDS = 1

export interface TokenBucketInit {
  /** Bytes per second; 0 (or less) is no limit: `take` never waits. @default 0 */
  rate?: number
  /** Most tokens the bucket holds, in bytes (it starts full). @default one second of `rate` */
  burst?: number
}

export interface TokenBucketComponents {
  /** Called with the seconds each waiting `take` spent waiting, once it got its tokens (or gave up). */
  onWait?: (seconds: number) => void
  /** Milliseconds, monotonic. @default performance.now */
  now?: () => number
}

export interface TakeOptions {
  signal?: AbortSignal
}

/** The part of a {@link TokenBucket} a component moving bytes needs. */
export interface RateLimit {
  take(bytes: number, options?: TakeOptions): Promise<void>
}

interface Waiter {
  bytes: number
  since: number
  resolve: () => void
  reject: (err: unknown) => void
  signal?: AbortSignal
  onAbort?: () => void
}

/**
 * A token bucket shared by everything moving bytes in one direction on this host.
 * `take(n)` waits until the bucket holds `min(n, burst)` tokens, then takes `n`: a
 * take larger than the burst leaves the bucket in debt, which later takes wait out, so
 * the long-run rate holds whatever the chunk sizes. Takers are served in arrival order
 * (FIFO): a large take is not starved by small ones. One timer, for the head of the
 * queue; the queue holds at most one entry per waiting caller, and an aborted caller
 * leaves it at once.
 */
export class TokenBucket implements RateLimit {
  readonly rate: number
  readonly burst: number
  private readonly now: () => number
  private readonly onWait?: (seconds: number) => void
  private tokens: number
  private refilled: number
  private readonly queue: Waiter[] = []
  private timer?: NodeJS.Timeout

  constructor (components: TokenBucketComponents = {}, init: TokenBucketInit = {}) {
    this.rate = Math.max(0, init.rate ?? DEFAULT_RATE)
    this.burst = Math.max(1, init.burst ?? this.rate * DEFAULT_BURST_SECONDS)
    this.now = components.now ?? (() => performance.now())
    this.onWait = components.onWait
    this.tokens = this.burst
    this.refilled = this.now()
  }

  /** Whether this bucket limits anything (rate above 0). */
  get limited (): boolean {
    return this.rate > 0
  }

  /** Callers waiting for tokens. */
  get waiting (): number {
    return this.queue.length
  }

  /**
   * Resolves once `bytes` may move. Rejects with the signal's reason if it aborts first;
   * the tokens are then not taken.
   */
  async take (bytes: number, options: TakeOptions = {}): Promise<void> {
    if (this.rate <= 0 || bytes <= 0) {
      return
    }
    options.signal?.throwIfAborted()
    this.refill()
    if (this.queue.length === 0 && this.tokens >= this.need(bytes)) {
      this.tokens -= bytes
      return
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { bytes, since: this.now(), resolve, reject }
      const signal = options.signal
      if (signal != null) {
        waiter.signal = signal
        waiter.onAbort = () => {
          const at = this.queue.indexOf(waiter)
          if (at >= 0) {
            this.queue.splice(at, 1)
            this.waited(waiter)
            reject(signal.reason)
            // the head left: the next waiter may be served now, or on another schedule
            if (at === 0) {
              this.reschedule()
            }
          }
        }
        signal.addEventListener('abort', waiter.onAbort, { once: true })
      }
      this.queue.push(waiter)
      if (this.queue.length === 1) {
        this.reschedule()
      }
    })
  }

  private need (bytes: number): number {
    return Math.min(bytes, this.burst)
  }

  private refill (): void {
    const now = this.now()
    this.tokens = Math.min(this.burst, this.tokens + (now - this.refilled) * this.rate / 1000)
    this.refilled = now
  }

  private waited (waiter: Waiter): void {
    if (waiter.signal != null && waiter.onAbort != null) {
      waiter.signal.removeEventListener('abort', waiter.onAbort)
    }
    this.onWait?.(Math.max(0, this.now() - waiter.since) / 1000)
  }

  /** Serves the waiters at the head that the bucket can pay for, and sets the timer for the next one. */
  private readonly pump = (): void => {
    this.timer = undefined
    this.refill()
    // bounded by the queue, which only shrinks here
    for (let head = this.queue[0]; head != null; head = this.queue[0]) {
      if (this.tokens < this.need(head.bytes)) {
        break
      }
      this.queue.shift()
      this.tokens -= head.bytes
      this.waited(head)
      head.resolve()
    }
    this.reschedule()
  }

  private reschedule (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    const head = this.queue[0]
    if (head == null) {
      return
    }
    this.refill()
    const deficit = this.need(head.bytes) - this.tokens
    // at least 1 ms, so rounding never spins the timer at 0
    const delay = deficit <= 0 ? 0 : Math.max(1, Math.ceil(deficit * 1000 / this.rate))
    this.timer = setTimeout(this.pump, delay)
  }
}
