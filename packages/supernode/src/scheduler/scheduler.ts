import {
  DEFAULT_ASSIGNMENT_TTL, DEFAULT_MAX_HOLDER_SCAN, DEFAULT_MAX_PEER_SOURCES, DEFAULT_MAX_PEER_UPLOADS, DEFAULT_MAX_SEEDING,
  DEFAULT_SUPERNODE_FANOUT, DEFAULT_WINDOW_FACTOR, DEFAULT_CROSS_IDC_FANOUT
} from './constants.ts'
import { nearness, SAME_IDC_NEARNESS, sameIdc, type Place } from './locality.ts'
import { PeerStats } from './peer-stats.ts'
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
  /** Transfers one peer is sent at once as first source, over all tasks. @default 8 */
  maxPeerUploads?: number
  /** Usable holders of a piece looked at per decision (4× as many visited in all). @default 64 */
  maxHolderScan?: number
  /** How long a handed-out piece counts against its first source's load. @default 30000 ms */
  assignmentTtl?: number
  /**
   * Transfers of one piece into one IDC from a peer in another IDC at once. The rest of
   * that IDC waits for the piece to land there and trades it inside. @default 1
   */
  crossIdcFanout?: number
}

export interface SchedulerComponents {
  peers: PeerRegistry
  /** Piece times and bad-bytes blocks, from daemons' reports. @default a new one */
  stats?: PeerStats
  /** The supernode itself, always the last resort for a piece it holds. */
  self: () => PeerAddress
}

interface Assignment {
  load: TaskLoad
  /** The requester */
  peerId: string
  num: number
  /** The source put first */
  source: string
  /** Served by the supernode because no peer held the piece */
  seeding: boolean
  /** The requester's IDC when the piece crosses into it from another */
  crossInto: string | undefined
  at: number
  /** False once settled or expired (it may still sit in the expiry queue) */
  live: boolean
}

/** What is in flight for one task: counted per piece, without building string keys on the hot path. */
interface TaskLoad {
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

/** A handed-out piece whose transfer ended: whose slot it freed. */
export interface Released {
  source: string
  seeding: boolean
}

interface Candidate {
  id: string
  near: number
  cost: number
  tie: number
}

/**
 * Decides which pieces a peer fetches next and from whom (docs/scheduling.md).
 *
 * Pieces: rarest first within a window at the front of what the peer lacks.
 *
 * Parents: peers that hold the piece and are not blocked, busy or at their upload
 * cap; nearest first (same IDC, then longest shared location prefix), then by expected
 * time (load × measured piece time), then the supernode, which serves a piece only
 * when no peer can.
 */
export class Scheduler {
  readonly stats: PeerStats
  private readonly components: SchedulerComponents
  private readonly maxPeerSources: number
  private readonly windowFactor: number
  private readonly supernodeFanout: number
  private readonly maxSeeding: number
  private readonly maxPeerUploads: number
  private readonly maxHolderScan: number
  private seedingTotal = 0
  private readonly assignmentTtl: number
  private readonly crossIdcFanout: number
  private readonly tasks = new Map<string, TaskLoad>()
  /** Handed-out transfers in the order they were handed out, for expiry; settled ones are skipped */
  private queue: Assignment[] = []
  private head = 0
  private live = 0
  /** parent → transfers handed out with it as first source */
  private readonly load = new Map<string, number>()

  constructor (components: SchedulerComponents, init: SchedulerInit = {}) {
    this.components = components
    this.stats = components.stats ?? new PeerStats()
    this.maxPeerSources = init.maxPeerSources ?? DEFAULT_MAX_PEER_SOURCES
    this.windowFactor = init.windowFactor ?? DEFAULT_WINDOW_FACTOR
    this.supernodeFanout = init.supernodeFanout ?? DEFAULT_SUPERNODE_FANOUT
    this.maxSeeding = init.maxSeeding ?? DEFAULT_MAX_SEEDING
    this.maxPeerUploads = init.maxPeerUploads ?? DEFAULT_MAX_PEER_UPLOADS
    this.maxHolderScan = init.maxHolderScan ?? DEFAULT_MAX_HOLDER_SCAN
    this.assignmentTtl = init.assignmentTtl ?? DEFAULT_ASSIGNMENT_TTL
    this.crossIdcFanout = init.crossIdcFanout ?? DEFAULT_CROSS_IDC_FANOUT
  }

  schedule (task: Task, peerId: string, running: ReadonlySet<number>, limit: number): PieceAssignment[] {
    this.expire()
    if (limit <= 0) {
      return []
    }
    const load = this.loadFor(task.id)
    const mine = load.byPeer.get(peerId)
    const windowSize = Math.max(limit * this.windowFactor, 16)
    if (this.window.length < windowSize) {
      this.window = new Float64Array(windowSize)
    }
    // each entry is rarity × 2^32 + piece number, so a numeric sort orders by rarity,
    // then number, with no object per piece
    const window = this.window
    let size = 0
    const pieceCount = task.pieceCount ?? Number.POSITIVE_INFINITY
    // bounded by the piece count and the window size
    for (let num = 0; num < pieceCount && size < windowSize; num++) {
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
      const stale = mine?.get(num)
      if (stale != null) {
        this.release(stale)
      }
      window[size++] = ((task.holders.get(num)?.size ?? 0) + (load.inflight.get(num) ?? 0)) * PIECE_KEY + num
    }
    const order = window.subarray(0, size).sort()

    const requester = this.components.peers.get(peerId)
    const out: PieceAssignment[] = []
    for (const key of order) {
      if (out.length >= limit) {
        break
      }
      const num = key % PIECE_KEY
      const holders = task.holders.get(num)
      if ((holders == null || holders.size === 0) && ((load.seeding.get(num) ?? 0) >= this.supernodeFanout || this.seedingTotal >= this.maxSeeding)) {
        // no peer holds it, and the supernode may not seed it now: skip it before
        // looking for sources
        continue
      }
      const sources = this.sourcesFor(task, num, peerId, requester)
      if (sources.length === 0) {
        // held by peers that are all busy right now: another piece now, this one from
        // them in a moment, rather than the supernode serving it once more
        continue
      }
      const seeding = sources[0]?.kind === 'supernode'
      if (seeding && ((load.seeding.get(num) ?? 0) >= this.supernodeFanout || this.seedingTotal >= this.maxSeeding)) {
        // being seeded to someone else already (fetch it from them once they have
        // it), or every supernode upload slot is taken
        continue
      }
      const first = sources[0]
      // a piece crossing into the requester's IDC from a peer in another
      const cross = !seeding && requester?.idc != null && sameIdc(requester, first) === false ? requester.idc : undefined
      if (cross != null && (load.crossing.get(cross)?.get(num) ?? 0) >= this.crossIdcFanout) {
        // already crossing into this IDC: fetch it from there once it landed
        continue
      }
      const piece = task.pieces.get(num)!
      this.assign(load, peerId, num, first?.peerId ?? '', seeding, cross)
      out.push({ num, offset: piece.offset, length: piece.length, digest: piece.digest, sources })
    }
    if (load.live === 0) {
      this.tasks.delete(load.id)
    }
    return out.sort((a, b) => a.num - b.num)
  }

  /** A result came back for a piece: its source is no longer busy with it. */
  settle (taskId: string, peerId: string, num: number): Released | undefined {
    const assignment = this.tasks.get(taskId)?.byPeer.get(peerId)?.get(num)
    if (assignment == null) {
      return undefined
    }
    this.release(assignment)
    return { source: assignment.source, seeding: assignment.seeding }
  }

  /** Transfers handed out with `peerId` as first source, not yet settled. */
  loadOf (peerId: string): number {
    return this.load.get(peerId) ?? 0
  }

  /** Assignments not yet settled or expired (for tests and the benchmark). */
  get pending (): number {
    return this.live
  }

  /** Entries the expiry queue holds, settled and passed ones included (bounded: about twice what is in flight, amortized). */
  get queued (): number {
    return this.queue.length
  }

  /** Tasks with transfers in flight (bounded: a task's entry goes with its last transfer). */
  get tasksInFlight (): number {
    return this.tasks.size
  }

  private selfSource?: { at: number, source: PieceSource }
  /** The rarest-first window, reused by every decision */
  private window = new Float64Array(64)

  /** The supernode as a source, made again at most once a second: its addresses rarely change, and each decision needs it. */
  private supernodeSource (): PieceSource {
    const now = Date.now()
    if (this.selfSource == null || now - this.selfSource.at > 1_000) {
      this.selfSource = { at: now, source: { ...this.components.self(), kind: 'supernode' } }
    }
    return this.selfSource.source
  }

  private loadFor (taskId: string): TaskLoad {
    let load = this.tasks.get(taskId)
    if (load == null) {
      load = { id: taskId, inflight: new Map(), seeding: new Map(), crossing: new Map(), byPeer: new Map(), live: 0 }
      this.tasks.set(taskId, load)
    }
    return load
  }

  /** Sources for a piece, best first; none while every peer holding it is busy or at its cap. */
  private sourcesFor (task: Task, num: number, requester: string, place: Place | undefined): PieceSource[] {
    const { peers } = this.components
    const { stats } = this
    const holders = task.holders.get(num)
    const best: Candidate[] = []
    let waitable = false
    /** A holder in the requester's IDC exists, though busy or at its cap */
    let nearWaitable = false
    if (holders != null) {
      let usable = 0
      let visited = 0
      // bounded: at most maxHolderScan usable holders, 4× as many visited in all
      for (const id of holders) {
        if (usable >= this.maxHolderScan || visited >= this.maxHolderScan * 4) {
          break
        }
        visited++
        if (id === requester || stats.isBlocked(task.id, id)) {
          continue
        }
        const info = peers.get(id)
        if (!peers.isUsable(id)) {
          if (peers.isBusy(id)) {
            waitable = true
            nearWaitable ||= sameIdc(place, info) === true
          }
          continue
        }
        const load = this.load.get(id) ?? 0
        if (load >= this.maxPeerUploads) {
          // this parent has its share: the piece waits for it (or another) rather than
          // fall to the supernode
          waitable = true
          nearWaitable ||= sameIdc(place, info) === true
          continue
        }
        usable++
        insertBest(best, id, nearness(place, info), (load + 1) * stats.pieceTime(id), this.maxPeerSources)
      }
    }
    if (best.length === 0 && waitable) {
      return []
    }
    const nearFound = best.some(c => c.near >= SAME_IDC_NEARNESS)
    if (nearWaitable && !nearFound) {
      // a parent in the requester's IDC has the piece but no slot now: wait for it
      // rather than pull the piece across IDCs again
      return []
    }
    const sources: PieceSource[] = []
    for (const { id, near } of best) {
      if (nearFound && near < SAME_IDC_NEARNESS) {
        // scarce cross-IDC links are not a fallback for a near parent that failed:
        // the supernode is
        continue
      }
      const info = peers.get(id)
      if (info != null) {
        const source: PieceSource = { peerId: info.peerId, addrs: info.addrs, kind: 'peer' }
        if (info.idc != null) {
          source.idc = info.idc
        }
        if (info.location != null) {
          source.location = info.location
        }
        sources.push(source)
      }
    }
    sources.push(this.supernodeSource())
    return sources
  }

  private assign (load: TaskLoad, peerId: string, num: number, source: string, seeding: boolean, crossInto?: string): void {
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
    const assignment: Assignment = { load, peerId, num, source, seeding, crossInto, at: Date.now(), live: true }
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

  private release (assignment: Assignment): void {
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

  private expire (): void {
    const cutoff = Date.now() - this.assignmentTtl
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

/** Window entries are rarity × PIECE_KEY + piece number: exact in a double while rarity (holders plus transfers in flight) stays below 2^21. */
const PIECE_KEY = 2 ** 32

/** Nearer first, then cheaper (expected time), then at random. */
function better (near: number, cost: number, tie: number, b: Candidate): boolean {
  return near !== b.near ? near > b.near : cost !== b.cost ? cost < b.cost : tie < b.tie
}

/**
 * Keeps the `max` best candidates in `best`, best first: O(max) per holder, no sort of
 * all holders, and no object made for a holder that does not make the list.
 */
function insertBest (best: Candidate[], id: string, near: number, cost: number, max: number): void {
  const tie = Math.random()
  let i = best.length
  while (i > 0 && better(near, cost, tie, best[i - 1]!)) {
    i--
  }
  if (i >= max) {
    return
  }
  best.splice(i, 0, { id, near, cost, tie })
  if (best.length > max) {
    best.pop()
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
