import { DEFAULT_RECHECK_INTERVAL, DEFAULT_SUPERNODE_FANOUT, MAX_POLL_PASSES } from './constants.ts'
import { Waiters } from './waiters.ts'
import type { Released, Scheduler } from './scheduler.ts'
import type { PeerRegistry } from '../peers/peer-registry.ts'
import type { Task, TaskListener } from '../tasks/task.ts'
import type { PieceAssignment, PieceResult } from '@shoal/core'

export interface ScheduleServiceInit {
  /** Waiters lacking a piece that one new holder of it wakes. @default the scheduler's `maxPeerUploads` (8): what the holder may be sent at once */
  wakePerHolder?: number
  /** Waiters lacking a piece that the supernode cutting it wakes. @default 1 (its fan-out) */
  wakePerNewPiece?: number
  /**
   * Longest a long poll sleeps before looking again unwoken, so what no report
   * announces (a BUSY back-off ending, an assignment expiring) is seen. @default 1000 ms
   */
  recheckInterval?: number
}

export interface ScheduleServiceComponents {
  peers: PeerRegistry
  scheduler: Scheduler
  /** The supernode's own peer id: its uploads say nothing of a peer's health. */
  selfId: () => string
  /** Told how long each scheduling decision took, in seconds. */
  onDecision?: (seconds: number) => void
}

/** What a peer asks for besides its report. */
export interface NextRequest {
  /** Pieces the peer is fetching now */
  running: readonly number[]
  limit: number
  /** Longest wait for something to fetch (a long poll); 0 answers at once */
  waitMs: number
}

/** Results that mean the source sent bytes that are not the piece. */
const BAD_BYTES = new Set(['ERR_PIECE_DIGEST_MISMATCH', 'ERR_PIECE_LENGTH_MISMATCH'])

/**
 * The scheduler as daemons use it, without transport: settles what a peer reports,
 * then answers with pieces to fetch, waiting (a long poll) until a change can help it.
 * The control API only parses, authorizes and translates.
 */
export class ScheduleService implements TaskListener {
  readonly waiters = new Waiters()
  private readonly c: ScheduleServiceComponents
  private readonly wakePerHolder: number
  private readonly wakePerNewPiece: number
  private readonly recheckInterval: number

  constructor (components: ScheduleServiceComponents, init: ScheduleServiceInit = {}) {
    this.c = components
    this.wakePerHolder = init.wakePerHolder ?? components.scheduler.peerUploadCap
    this.wakePerNewPiece = init.wakePerNewPiece ?? DEFAULT_SUPERNODE_FANOUT
    this.recheckInterval = init.recheckInterval ?? DEFAULT_RECHECK_INTERVAL
  }

  /** Starts hearing a task's changes. */
  attach (task: Task): void {
    task.listener = this
  }

  /**
   * Takes a peer's report of finished transfers: frees their slots, records the
   * parents' health and speed, blocks parents that sent bad bytes, adds holders, and
   * wakes the waiters a freed slot or a new holder can help.
   *
   * A report is a member's word, so what it may say of another peer is narrow: blame,
   * success and piece time count only for a result that settles a live assignment of
   * that piece to the reporter, naming a source it was handed and the registry knows.
   * Anything else only makes the reporter a holder (it speaks for itself).
   */
  report (task: Task, peerId: string, results: readonly PieceResult[]): void {
    const { scheduler, peers } = this.c
    const self = this.c.selfId()
    // a daemon tries a piece's sources in turn, so one transfer may end in several
    // results (BUSY from the first, ok from the next): each settled assignment vouches
    // for each of its sources once, within this report
    const settled = new Map<number, { released: Released | undefined, named: Set<string> }>()
    // bounded by the schema (at most 1024 results)
    for (const result of results) {
      let entry = settled.get(result.num)
      const first = entry == null
      if (entry == null) {
        entry = { released: scheduler.settle(task.id, peerId, result.num), named: new Set() }
        settled.set(result.num, entry)
      }
      const released = first ? entry.released : undefined
      // settles what was handed out, from a source among those handed out and not
      // named before for it, that the registry knows
      const vouched = entry.released?.sources.includes(result.source) === true && !entry.named.has(result.source) && peers.get(result.source) != null
      entry.named.add(result.source)
      // the supernode's own uploads, and pieces a peer already had, say nothing of a peer's health
      if (vouched && result.source !== self && result.source !== peerId) {
        if (result.code === 'ERR_PEER_BUSY') {
          peers.recordBusy(result.source)
        } else if (result.code === 'ERR_PIECE_NOT_FOUND') {
          // the source no longer has it (evicted, or its file was damaged): stop sending
          // peers there for this piece; a healthy peer is not failing
          task.removeHolder(result.num, result.source)
        } else if (result.code != null && BAD_BYTES.has(result.code)) {
          scheduler.stats.recordBadBytes(task.id, result.source, peerId)
          task.removeHolder(result.num, result.source)
          peers.recordTransfer(result.source, false)
        } else {
          peers.recordTransfer(result.source, result.ok)
        }
        const piece = task.pieces.get(result.num)
        if (result.ok && piece != null && result.ms != null) {
          // the piece's real length: reported bytes are the reporter's word
          scheduler.stats.recordTime(result.source, piece.length, result.ms)
        }
      }
      if (result.ok) {
        // wakes waiters lacking this piece, up to what the new holder can serve
        task.addHolder(result.num, peerId)
      }
      if (released != null && this.waiters.wakeWantingAny(task.id, () => [result.num], 1) === 0) {
        // a slot of that parent is free: one waiter lacking a piece it holds may now
        // get it there (any piece, when the parent is the supernode)
        this.waiters.wakeWantingAny(task.id, () => released.seeding ? task.pieces.keys() : heldBy(task, released.source), 1)
      }
    }
  }

  /**
   * Up to `limit` pieces for the peer to fetch, with their sources. When none is ready
   * it waits up to `waitMs` for a change that can help this peer, then looks again.
   */
  async next (task: Task, peerId: string, request: NextRequest, options: { signal?: AbortSignal } = {}): Promise<PieceAssignment[]> {
    const running = new Set(request.running)
    const deadline = Date.now() + request.waitMs
    const wants = (num: number): boolean => !running.has(num) && !task.holds(num, peerId)
    // bounded: each pass either answers or waits for a wake-up until the deadline
    for (let pass = 0; pass < MAX_POLL_PASSES; pass++) {
      const assignments = task.state === 'failed' ? [] : this.decide(task, peerId, running, request.limit)
      const remaining = deadline - Date.now()
      if (assignments.length > 0 || task.state === 'failed' || nothingLeft(task, peerId, running) || request.limit === 0 ||
        remaining <= 0 || options.signal?.aborted === true) {
        return assignments
      }
      await this.waiters.wait(task.id, peerId, wants, Math.min(remaining, this.recheckInterval), options.signal)
    }
    return []
  }

  /** One scheduling decision, timed. */
  decide (task: Task, peerId: string, running: ReadonlySet<number>, limit: number): PieceAssignment[] {
    const started = performance.now()
    const out = this.c.scheduler.schedule(task, peerId, running, limit)
    this.c.onDecision?.((performance.now() - started) / 1000)
    return out
  }

  /**
   * A peer left: what was measured of it goes (its bad-bytes blocks stay while they
   * last), and what was handed to it ends, freeing its parents' slots at once.
   */
  forgetPeer (peerId: string): void {
    this.c.scheduler.stats.forget(peerId)
    this.c.scheduler.releasePeer(peerId)
  }

  pieceAdded (task: Task, num: number): void {
    this.waiters.wakeWanting(task.id, num, this.wakePerNewPiece)
  }

  holderAdded (task: Task, num: number, peerId: string): void {
    this.waiters.wakeWanting(task.id, num, this.wakePerHolder, peerId)
  }

  stateChanged (task: Task): void {
    if (task.state === 'failed' || task.pieceSize === 0) {
      // failed, or started again (`reset`: no pieces yet): nobody will report what was
      // handed out of it, and its slots must not stay taken until the assignments expire
      this.c.scheduler.releaseTask(task.id)
    }
    this.waiters.wakeAll(task.id)
  }
}

/** The pieces `peerId` holds of a task, lazily (a waiter that wants one stops the walk). */
function * heldBy (task: Task, peerId: string): Generator<number> {
  for (const [num, holders] of task.holders) {
    if (holders.has(peerId)) {
      yield num
    }
  }
}

/**
 * Whether a peer has nothing more to get from this task: the content is whole at the
 * supernode, and the peer holds or is fetching every piece.
 */
export function nothingLeft (task: Task, peerId: string, running: ReadonlySet<number>): boolean {
  if (task.state !== 'success') {
    return false
  }
  const pieceCount = task.pieceCount ?? 0
  let fetching = 0
  // only real pieces it does not hold yet count: `running` is the peer's word, and a
  // made-up or held number must not end its poll early (a Set: no duplicates)
  for (const num of running) {
    if (Number.isInteger(num) && num >= 0 && num < pieceCount && !task.holds(num, peerId)) {
      fetching++
    }
  }
  return task.heldBy(peerId) + fetching >= pieceCount
}
