export interface SupernodeBreakerInit {
  /**
   * How long downloads skip the swarm (and go straight to the origin) once one found
   * the supernode unavailable; then one download tries it again. 0 never skips.
   * @default 30000 ms
   */
  cooldown?: number
}

export interface SupernodeBreakerComponents {
  /** 1 while downloads skip the swarm, 0 otherwise. */
  open: { set: (value: number) => void }
  /** @default performance.now */
  now?: () => number
}

type State = 'closed' | 'open' | 'half-open'

/**
 * A circuit breaker in front of one supernode. Closed: every download tries the swarm.
 * A download that found the supernode unavailable (after the client's own retries)
 * opens it: for `cooldown` new downloads go straight to the origin instead of each
 * paying the connect timeout. Then it is half-open: one download (the probe) tries the
 * swarm while the others still skip it; the probe's outcome closes it or opens it again.
 */
export class SupernodeBreaker {
  private readonly cooldown: number
  private readonly gauge: { set: (value: number) => void }
  private readonly now: () => number
  private state: State = 'closed'
  private openUntil = 0

  constructor (components: SupernodeBreakerComponents, init: SupernodeBreakerInit = {}) {
    this.cooldown = init.cooldown ?? 30_000
    this.gauge = components.open
    this.now = components.now ?? (() => performance.now())
    this.gauge.set(0)
  }

  /**
   * Whether this download may try the swarm. A `true` must be followed by exactly one of
   * {@link succeeded}, {@link failed} or {@link released}.
   */
  tryAcquire (): boolean {
    if (this.state === 'closed') {
      return true
    }
    if (this.state === 'open' && this.now() >= this.openUntil) {
      this.state = 'half-open'
      return true
    }
    return false
  }

  /** The supernode answered (whatever it said): downloads use the swarm again. */
  succeeded (): void {
    this.state = 'closed'
    this.gauge.set(0)
  }

  /** The supernode could not be reached or failed: skip it for the cool-down. */
  failed (): void {
    if (this.cooldown <= 0) {
      return
    }
    this.state = 'open'
    this.openUntil = this.now() + this.cooldown
    this.gauge.set(1)
  }

  /** The download ended without learning anything about the supernode (it was aborted). */
  released (): void {
    if (this.state === 'half-open') {
      // let the next download probe right away
      this.state = 'open'
      this.openUntil = this.now()
    }
  }

  get isOpen (): boolean {
    return this.state !== 'closed'
  }
}

/**
 * One gauge for several breakers (one per supernode): it shows how many of them are
 * open, so a single supernode reads 1 or 0 as before.
 */
export function openBreakersGauge (gauge: { set: (value: number) => void }): (id: string) => { set: (value: number) => void } {
  const open = new Set<string>()
  gauge.set(0)
  return (id) => ({
    set: (value) => {
      if (value > 0) {
        open.add(id)
      } else {
        open.delete(id)
      }
      gauge.set(open.size)
    }
  })
}
