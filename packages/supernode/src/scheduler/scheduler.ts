import type { PeerRegistry } from '../peers/peer-registry.ts'
import type { Task } from '../tasks/task.ts'
import type { PeerAddress, PieceAssignment, PieceSource } from '@shoal/core'

export interface SchedulerInit {
  /** Peer sources listed per piece, before the supernode. @default 3 */
  maxPeerSources?: number
  /**
   * How far past a peer's first missing piece the scheduler looks for the rarest
   * pieces, in multiples of the pieces asked for (at least 16 pieces). @default 4
   */
  windowFactor?: number
  /**
   * Transfers of one piece the supernode serves at once while no peer holds it. Others
   * who want that piece get a different one now and this one from a peer later, so
   * the supernode sends each piece about once, however many hosts start together.
   * @default 1
   */
  supernodeFanout?: number
  /**
   * Transfers the supernode serves at once as the first source (its upload slots).
   * Beyond this, peers wait for other peers rather than be sent to a busy supernode.
   * @default 32
   */
  maxSeeding?: number
  /** How long a handed-out piece counts against its first source's load. @default 30000 ms */
  assignmentTtl?: number
}

export interface SchedulerComponents {
  peers: PeerRegistry
  /** The supernode itself, always the last resort for a piece it holds. */
  self: () => PeerAddress
}

interface Assignment {
  /** The source put first */
  source: string
  /** `${taskId}/${num}` */
  piece: string
  /** Served by the supernode because no peer held the piece */
  seeding: boolean
  at: number
}

/**
 * Decides which pieces a peer fetches next and from whom.
 *
 * Pieces: rarest first within a window at the front of what the peer lacks. The window
 * keeps a daemon close to the order it streams the layer in; rarest first (fewest
 * holders, counting transfers in flight) makes peers that start together fetch
 * different pieces, so they have something to trade instead of all queueing on the
 * supernode for piece 0.
 *
 * Sources: the peers that reported holding the piece, least loaded first, then the
 * supernode: the supernode serves a piece only when no peer can, which is what keeps
 * the origin and the seed from being the bottleneck.
 */
export class Scheduler {
  private readonly components: SchedulerComponents
  private readonly maxPeerSources: number
  private readonly windowFactor: number
  private readonly supernodeFanout: number
  private readonly maxSeeding: number
  private seedingTotal = 0
  private readonly assignmentTtl: number
  /** (task, requester, piece) → what was handed out, to count load and pieces in flight */
  private readonly assignments = new Map<string, Assignment>()
  private readonly load = new Map<string, number>()
  /** (task, piece) → transfers of it in flight, to any peer */
  private readonly inflight = new Map<string, number>()
  /** (task, piece) → transfers of it in flight from the supernode */
  private readonly seeding = new Map<string, number>()

  constructor (components: SchedulerComponents, init: SchedulerInit = {}) {
    this.components = components
    this.maxPeerSources = init.maxPeerSources ?? 3
    this.windowFactor = init.windowFactor ?? 4
    this.supernodeFanout = init.supernodeFanout ?? 1
    this.maxSeeding = init.maxSeeding ?? 32
    this.assignmentTtl = init.assignmentTtl ?? 30_000
  }

  schedule (task: Task, peerId: string, running: ReadonlySet<number>, limit: number): PieceAssignment[] {
    this.expire()
    if (limit <= 0) {
      return []
    }
    const windowSize = Math.max(limit * this.windowFactor, 16)
    const window: Array<{ num: number, rarity: number }> = []
    const pieceCount = task.pieceCount ?? Number.POSITIVE_INFINITY
    // bounded by the piece count and the window size
    for (let num = 0; num < pieceCount && window.length < windowSize; num++) {
      if (!task.pieces.has(num)) {
        if (task.pieceCount == null) {
          break
        }
        continue
      }
      if (running.has(num) || task.holds(num, peerId)) {
        continue
      }
      // the requester names every piece it is fetching: an assignment of this one to it
      // is stale (a daemon restarted under the same peer id), and must not keep the
      // piece's seeding slot until it expires
      const stale = this.assignments.get(`${task.id}/${peerId}/${num}`)
      if (stale != null) {
        this.release(`${task.id}/${peerId}/${num}`, stale)
      }
      window.push({ num, rarity: (task.holders.get(num)?.size ?? 0) + (this.inflight.get(`${task.id}/${num}`) ?? 0) })
    }
    window.sort((a, b) => a.rarity - b.rarity || a.num - b.num)

    const out: PieceAssignment[] = []
    for (const { num } of window) {
      if (out.length >= limit) {
        break
      }
      const sources = this.sourcesFor(task, num, peerId)
      if (sources.length === 0) {
        // held by peers that are all busy right now: another piece now, this one from
        // them in a moment, rather than the supernode serving it once more
        continue
      }
      const seeding = sources[0]?.kind === 'supernode'
      if (seeding && ((this.seeding.get(`${task.id}/${num}`) ?? 0) >= this.supernodeFanout || this.seedingTotal >= this.maxSeeding)) {
        // being seeded to someone else already (fetch it from them once they have
        // it), or every supernode upload slot is taken
        continue
      }
      const piece = task.pieces.get(num)!
      this.assign(task.id, peerId, num, sources[0]?.peerId ?? '', seeding)
      out.push({ num, offset: piece.offset, length: piece.length, digest: piece.digest, sources })
    }
    return out.sort((a, b) => a.num - b.num)
  }

  /** A result came back for a piece: its source is no longer busy with it. */
  settle (taskId: string, peerId: string, num: number): void {
    const key = `${taskId}/${peerId}/${num}`
    const assignment = this.assignments.get(key)
    if (assignment != null) {
      this.release(key, assignment)
    }
  }

  /** Sources for a piece, best first; none while every peer holding it is busy. */
  private sourcesFor (task: Task, num: number, requester: string): PieceSource[] {
    const { peers } = this.components
    const others = [...task.holders.get(num) ?? []].filter(id => id !== requester)
    const holders = others
      .filter(id => peers.isUsable(id))
      .map(id => ({ id, load: this.load.get(id) ?? 0, tie: Math.random() }))
      .sort((a, b) => a.load - b.load || a.tie - b.tie)
      .slice(0, this.maxPeerSources)

    if (holders.length === 0 && others.some(id => peers.isBusy(id))) {
      return []
    }
    const sources: PieceSource[] = []
    for (const holder of holders) {
      const info = peers.get(holder.id)
      if (info != null) {
        sources.push({ peerId: info.peerId, addrs: info.addrs, kind: 'peer' })
      }
    }
    sources.push({ ...this.components.self(), kind: 'supernode' })
    return sources
  }

  private assign (taskId: string, peerId: string, num: number, source: string, seeding: boolean): void {
    const key = `${taskId}/${peerId}/${num}`
    const previous = this.assignments.get(key)
    if (previous != null) {
      this.release(key, previous)
    }
    // re-inserting keeps the map in time order, so expire() stops at the first live entry
    const assignment = { source, piece: `${taskId}/${num}`, seeding, at: Date.now() }
    this.assignments.set(key, assignment)
    bump(this.load, assignment.source, 1)
    bump(this.inflight, assignment.piece, 1)
    if (seeding) {
      bump(this.seeding, assignment.piece, 1)
      this.seedingTotal++
    }
  }

  private release (key: string, assignment: Assignment): void {
    this.assignments.delete(key)
    bump(this.load, assignment.source, -1)
    bump(this.inflight, assignment.piece, -1)
    if (assignment.seeding) {
      bump(this.seeding, assignment.piece, -1)
      this.seedingTotal--
    }
  }

  private expire (): void {
    const cutoff = Date.now() - this.assignmentTtl
    for (const [key, assignment] of this.assignments) {
      if (assignment.at >= cutoff) {
        break
      }
      this.release(key, assignment)
    }
  }
}

function bump (counts: Map<string, number>, key: string, delta: number): void {
  const next = (counts.get(key) ?? 0) + delta
  if (next <= 0) {
    counts.delete(key)
  } else {
    counts.set(key, next)
  }
}
