/**
 * What the scheduler has handed out and not yet heard back about: transfers in flight
 * per task and piece, per parent (its load), from the supernode (seeding), and into
 * each IDC from another (crossings). Kept per task, without string keys on the hot
 * path; a transfer ends when its result is reported (`release`) or its ttl runs out
 * (`expire`). Bounded by what is in flight: a task's entry goes with its last
 * transfer, and the expiry queue drops what it has passed.
 */

export interface Assignment {
  load: TaskLoad
  /** The requester */
  peerId: string
  num: number
  /** The source put first */
  source: string
  /** Every source handed out, best first: only a result naming one of them says anything about its source */
  sources: readonly string[]
  /** Served by the supernode because no peer held the piece */
  seeding: boolean
  /** The requester's IDC when the piece crosses into it from another */
  crossInto: string | undefined
  at: number
  /** False once settled or expired (it may still sit in the expiry queue) */
  live: boolean
}

/** What is in flight for one task, counted per piece. */
export interface TaskLoad {
  id: string
  /** piece → transfers of it in flight, to any peer */
  inflight: Map<number, number>
  /** piece → transfers of it in flight from the supernode */
  seeding: Map<number, number>
  /** IDC → piece → transfers of it in flight into that IDC from another */
  crossing: Map<string, Map<number, number>>
  /** requester → piece → what was handed out */
  byPeer: Map<string, Map<number, Assignment>>
  live: number
}

export class InFlight {
  /** Transfers in flight from the supernode, over all tasks */
  seedingTotal = 0
  private readonly ttl: number
  private readonly tasks = new Map<string, TaskLoad>()
  /** Handed-out transfers in the order they were handed out, for expiry; settled ones are skipped */
  private queue: Assignment[] = []
  private head = 0
  private live = 0
  /** parent → transfers handed out with it as first source */
  private readonly load = new Map<string, number>()

  /** @param ttl how long a handed-out transfer counts, in ms */
  constructor (ttl: number) {
    this.ttl = ttl
  }

  /** The task's entry, made when missing (`dropIfIdle` removes it again when nothing was handed out). */
  forTask (taskId: string): TaskLoad {
    let load = this.tasks.get(taskId)
    if (load == null) {
      load = { id: taskId, inflight: new Map(), seeding: new Map(), crossing: new Map(), byPeer: new Map(), live: 0 }
      this.tasks.set(taskId, load)
    }
    return load
  }

  /** What was handed to `peerId` of piece `num` of a task, if still in flight. */
  get (taskId: string, peerId: string, num: number): Assignment | undefined {
    return this.tasks.get(taskId)?.byPeer.get(peerId)?.get(num)
  }

  dropIfIdle (load: TaskLoad): void {
    if (load.live === 0 && this.tasks.get(load.id) === load) {
      this.tasks.delete(load.id)
    }
  }

  /** Transfers handed out with `peerId` as first source, not yet settled. */
  loadOf (peerId: string): number {
    return this.load.get(peerId) ?? 0
  }

  /** Transfers in flight. */
  get pending (): number {
    return this.live
  }

  /** Entries the expiry queue holds, settled and passed ones included (bounded: about twice what is in flight, amortized). */
  get queued (): number {
    return this.queue.length
  }

  /** Tasks with transfers in flight. */
  get tasksInFlight (): number {
    return this.tasks.size
  }

  assign (load: TaskLoad, peerId: string, num: number, sources: readonly string[], seeding: boolean, crossInto?: string): void {
    const source = sources[0] ?? ''
    let mine = load.byPeer.get(peerId)
    if (mine == null) {
      mine = new Map()
      load.byPeer.set(peerId, mine)
    }
    const previous = mine.get(num)
    if (previous != null) {
      this.release(previous)
    }
    if (this.tasks.get(load.id) !== load) {
      // a release earlier in this decision emptied and dropped it
      this.tasks.set(load.id, load)
    }
    const assignment: Assignment = { load, peerId, num, source, sources, seeding, crossInto, at: Date.now(), live: true }
    mine.set(num, assignment)
    this.queue.push(assignment)
    this.live++
    load.live++
    bump(this.load, source, 1)
    bump(load.inflight, num, 1)
    if (crossInto != null) {
      let crossing = load.crossing.get(crossInto)
      if (crossing == null) {
        crossing = new Map()
        load.crossing.set(crossInto, crossing)
      }
      bump(crossing, num, 1)
    }
    if (seeding) {
      bump(load.seeding, num, 1)
      this.seedingTotal++
    }
  }

  release (assignment: Assignment): void {
    if (!assignment.live) {
      return
    }
    assignment.live = false
    const { load, num } = assignment
    const mine = load.byPeer.get(assignment.peerId)
    if (mine?.get(num) === assignment) {
      mine.delete(num)
      if (mine.size === 0) {
        load.byPeer.delete(assignment.peerId)
      }
    }
    this.live--
    load.live--
    bump(this.load, assignment.source, -1)
    bump(load.inflight, num, -1)
    if (assignment.crossInto != null) {
      const crossing = load.crossing.get(assignment.crossInto)
      if (crossing != null) {
        bump(crossing, num, -1)
        if (crossing.size === 0) {
          load.crossing.delete(assignment.crossInto)
        }
      }
    }
    if (assignment.seeding) {
      bump(load.seeding, num, -1)
      this.seedingTotal--
    }
    if (load.live === 0 && this.tasks.get(load.id) === load) {
      this.tasks.delete(load.id)
    }
  }

  /** Ends every transfer handed to `peerId` (it left): its parents' slots are free again. Bounded by the tasks in flight and its transfers. */
  releasePeer (peerId: string): number {
    let released = 0
    for (const load of [...this.tasks.values()]) {
      const mine = load.byPeer.get(peerId)
      if (mine != null) {
        for (const assignment of [...mine.values()]) {
          this.release(assignment)
          released++
        }
      }
    }
    return released
  }

  /** Ends every transfer of a task (it failed or restarted): nobody will report them. */
  releaseTask (taskId: string): number {
    const load = this.tasks.get(taskId)
    if (load == null) {
      return 0
    }
    let released = 0
    for (const mine of [...load.byPeer.values()]) {
      for (const assignment of [...mine.values()]) {
        this.release(assignment)
        released++
      }
    }
    return released
  }

  expire (): void {
    const cutoff = Date.now() - this.ttl
    // bounded by the queue; each entry is passed once
    while (this.head < this.queue.length) {
      const assignment = this.queue[this.head]!
      if (assignment.live && assignment.at >= cutoff) {
        break
      }
      this.release(assignment)
      this.head++
    }
    const queued = this.queue.length - this.head
    if ((this.head > 1024 && this.head > queued) || (queued > 1024 && queued > 2 * this.live)) {
      // settled entries are dropped now and then (order kept): the queue stays about as
      // long as what is in flight, amortized O(1) per transfer
      this.queue = this.queue.slice(this.head).filter(a => a.live)
      this.head = 0
    }
  }
}

function bump<K> (counts: Map<K, number>, key: K, delta: number): void {
  const next = (counts.get(key) ?? 0) + delta
  if (next <= 0) {
    counts.delete(key)
  } else {
    counts.set(key, next)
  }
}
