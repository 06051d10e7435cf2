import {
  DEFAULT_ASSIGNMENT_TTL, DEFAULT_MAX_HOLDER_SCAN, DEFAULT_MAX_PEER_SOURCES, DEFAULT_MAX_PEER_UPLOADS, DEFAULT_MAX_SEEDING,
  DEFAULT_SUPERNODE_FANOUT, DEFAULT_WINDOW_FACTOR, DEFAULT_CROSS_IDC_FANOUT, DEFAULT_NEAR_WAIT, DEFAULT_MAX_NEAR_WAITS
} from './constants.ts'
import { nearness, SAME_IDC_NEARNESS, sameIdc, type Place } from './locality.ts'
import { InFlight } from './in-flight.ts'
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
  /**
   * Longest a requester is kept waiting for one piece because every peer holding it (or
   * every one in its IDC) is busy or at its cap; after this it is sent to a farther
   * parent or the supernode. @default 3000 ms
   */
  nearWait?: number
}

export interface SchedulerComponents {
  peers: PeerRegistry
  /** Piece times and bad-bytes blocks, from daemons' reports. @default a new one */
  stats?: PeerStats
  /** The supernode itself, always the last resort for a piece it holds. */
  self: () => PeerAddress
}

/** A handed-out piece whose transfer ended: whose slot it freed. */
export interface Released {
  /** The first source, whose slot it freed */
  source: string
  /** Every source that was handed out for it */
  sources: readonly string[]
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
  private readonly crossIdcFanout: number
  private readonly nearWait: number
  /** `task \0 requester \0 piece` → when it was first kept waiting for a busy parent; bounded by DEFAULT_MAX_NEAR_WAITS */
  private readonly waitingSince = new Map<string, number>()
  /** What was handed out and is not settled yet */
  private readonly inFlight: InFlight

  constructor (components: SchedulerComponents, init: SchedulerInit = {}) {
    this.components = components
    this.stats = components.stats ?? new PeerStats()
    this.maxPeerSources = init.maxPeerSources ?? DEFAULT_MAX_PEER_SOURCES
    this.windowFactor = init.windowFactor ?? DEFAULT_WINDOW_FACTOR
    this.supernodeFanout = init.supernodeFanout ?? DEFAULT_SUPERNODE_FANOUT
    this.maxSeeding = init.maxSeeding ?? DEFAULT_MAX_SEEDING
    this.maxPeerUploads = init.maxPeerUploads ?? DEFAULT_MAX_PEER_UPLOADS
    this.maxHolderScan = init.maxHolderScan ?? DEFAULT_MAX_HOLDER_SCAN
    this.inFlight = new InFlight(init.assignmentTtl ?? DEFAULT_ASSIGNMENT_TTL)
    this.crossIdcFanout = init.crossIdcFanout ?? DEFAULT_CROSS_IDC_FANOUT
    this.nearWait = init.nearWait ?? DEFAULT_NEAR_WAIT
  }

  schedule (task: Task, peerId: string, running: ReadonlySet<number>, limit: number): PieceAssignment[] {
    const inFlight = this.inFlight
    inFlight.expire()
    const load = inFlight.forTask(task.id)
    const mine = load.byPeer.get(peerId)
    if (mine != null) {
      // the requester names every piece it is fetching: an assignment to it of one it
      // does not name is stale (a daemon restarted under the same peer id, or gave up on
      // it), and must not keep its parent's slot or the piece's seeding slot until it
      // expires. Done before the `limit` check, so a poll asking for nothing frees them
      // too. Bounded by what is in flight to this peer
      for (const [num, stale] of [...mine]) {
        if (!running.has(num)) {
          inFlight.release(stale)
        }
      }
    }
    if (limit <= 0) {
      inFlight.dropIfIdle(load)
      return []
    }
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
      if ((holders == null || holders.size === 0) && ((load.seeding.get(num) ?? 0) >= this.supernodeFanout || inFlight.seedingTotal >= this.maxSeeding)) {
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
      if (seeding && ((load.seeding.get(num) ?? 0) >= this.supernodeFanout || inFlight.seedingTotal >= this.maxSeeding)) {
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
      inFlight.assign(load, peerId, num, sources.map(s => s.peerId), seeding, cross)
      out.push({ num, offset: piece.offset, length: piece.length, digest: piece.digest, sources })
    }
    inFlight.dropIfIdle(load)
    return out.sort((a, b) => a.num - b.num)
  }

  /** A result came back for a piece: its source is no longer busy with it. */
  settle (taskId: string, peerId: string, num: number): Released | undefined {
    const assignment = this.inFlight.get(taskId, peerId, num)
    if (assignment == null) {
      return undefined
    }
    this.inFlight.release(assignment)
    return { source: assignment.source, sources: assignment.sources, seeding: assignment.seeding }
  }

  /** Ends what was handed to a peer that left. */
  releasePeer (peerId: string): number {
    return this.inFlight.releasePeer(peerId)
  }

  /** Ends what was handed out of a task that failed or restarted. */
  releaseTask (taskId: string): number {
    return this.inFlight.releaseTask(taskId)
  }

  /** Transfers one peer is sent at once as first source (its upload cap here). */
  get peerUploadCap (): number {
    return this.maxPeerUploads
  }

  /** Transfers handed out with `peerId` as first source, not yet settled. */
  loadOf (peerId: string): number {
    return this.inFlight.loadOf(peerId)
  }

  /** Assignments not yet settled or expired (for tests and the benchmark). */
  get pending (): number {
    return this.inFlight.pending
  }

  /** Entries the expiry queue holds, settled and passed ones included (bounded: about twice what is in flight, amortized). */
  get queued (): number {
    return this.inFlight.queued
  }

  /** Tasks with transfers in flight (bounded: a task's entry goes with its last transfer). */
  get tasksInFlight (): number {
    return this.inFlight.tasksInFlight
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
      const maxVisits = this.maxHolderScan * 4
      // start at a random holder (wrapping round): in insertion order, the first holders
      // being busy or at their cap would hide every idle one behind them, decision after
      // decision. Skipping costs an iterator step per holder, no lookup
      const start = holders.size > maxVisits ? Math.floor(Math.random() * holders.size) : 0
      // bounded: at most maxHolderScan usable holders, 4× as many visited in all
      for (const id of rotated(holders, start)) {
        if (usable >= this.maxHolderScan || visited >= maxVisits) {
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
        const load = this.inFlight.loadOf(id)
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
    const nearFound = best.some(c => c.near >= SAME_IDC_NEARNESS)
    if ((best.length === 0 && waitable) || (nearWaitable && !nearFound)) {
      // every holder is busy, or a parent in the requester's IDC has the piece but no
      // slot now: wait for it rather than have the supernode serve it again or pull it
      // across IDCs again, but only for a while, so a parent that stays busy cannot
      // starve the requester (or its whole IDC)
      if (this.keepWaiting(task.id, requester, num)) {
        return []
      }
    } else if (this.waitingSince.size > 0) {
      this.waitingSince.delete(waitKey(task.id, requester, num))
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

  /** Whether (requester, task, piece) may still wait for a busy parent: since it first did, less than `nearWait` passed. */
  private keepWaiting (taskId: string, requester: string, num: number): boolean {
    const key = waitKey(taskId, requester, num)
    const now = Date.now()
    const since = this.waitingSince.get(key)
    // long past: a wait of another time (the peer restarted, or asks again much later)
    if (since == null || now - since > STALE_WAITS * this.nearWait) {
      this.waitingSince.delete(key)
      if (this.waitingSince.size >= DEFAULT_MAX_NEAR_WAITS) {
        // the oldest first (insertion order); bounded by the map
        for (const [k, at] of this.waitingSince) {
          if (now - at <= STALE_WAITS * this.nearWait && this.waitingSince.size < DEFAULT_MAX_NEAR_WAITS) {
            break
          }
          this.waitingSince.delete(k)
        }
      }
      this.waitingSince.set(key, now)
      return true
    }
    if (now - since < this.nearWait) {
      return true
    }
    // waited long enough: farther parents or the supernode now, and on each look until
    // it gets a source (the entry goes then, or is dropped as stale)
    return false
  }

  /** Requester-piece waits being timed (for tests). */
  get waitsTimed (): number {
    return this.waitingSince.size
  }
}

/** A timed wait this many `nearWait`s old is forgotten. */
const STALE_WAITS = 10

function waitKey (taskId: string, requester: string, num: number): string {
  return `${taskId}\0${requester}\0${num}`
}

/** The set's entries from index `start` on, then those before it. */
function * rotated<T> (set: ReadonlySet<T>, start: number): Generator<T> {
  if (start === 0) {
    yield * set
    return
  }
  let i = 0
  // bounded by the set: the first walk skips to `start`, the second yields what was skipped
  for (const item of set) {
    if (i++ >= start) {
      yield item
    }
  }
  i = 0
  for (const item of set) {
    if (i++ >= start) {
      return
    }
    yield item
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
