import {
  BAD_PIECE_GLOBAL_REPORTERS, DEFAULT_MAX_STATS_PEERS, SPEED_SAMPLE_CLAMP, DEFAULT_BAD_PIECE_GLOBAL_BLOCK, DEFAULT_BAD_PIECE_MEMORY, DEFAULT_BAD_PIECE_TASK_BLOCK, DEFAULT_SPEED_EWMA_WEIGHT, MAX_BAD_PIECE_BLOCK
} from './constants.ts'

export interface PeerStatsInit {
  /** Weight of the newest sample in a peer's moving average of piece time. @default 0.3 */
  speedWeight?: number
  /** Bad bytes from a peer block it for that task this long. @default 600000 ms */
  badPieceTaskBlock?: number
  /** Bad bytes again within this long block it for every task. @default 3600000 ms */
  badPieceMemory?: number
  /** The first every-task block; each further offence doubles it, up to 24 h. @default 1800000 ms */
  badPieceGlobalBlock?: number
  /** Peers whose piece times, and peers whose offences, are kept at most (each). @default 65536 */
  maxPeers?: number
}

interface Offences {
  count: number
  lastAt: number
  /** Blocked for every task until */
  globalUntil: number
  /** Blocked for these tasks until */
  tasks: Map<string, number>
  /** Who reported the offences in this memory (a few are enough) */
  reporters: Set<string>
}

/** Milliseconds per MiB assumed for a peer never measured, until some peer is. */
const UNMEASURED_MS_PER_MIB = 50

/**
 * What the scheduler learned of each parent from daemons' reports: how fast it serves
 * a piece (a moving average of milliseconds per MiB), and whether it sent bad bytes.
 * Bounded: one entry per known peer, dropped with the peer (`forget`).
 */
export class PeerStats {
  private readonly speedWeight: number
  private readonly badPieceTaskBlock: number
  private readonly badPieceMemory: number
  private readonly badPieceGlobalBlock: number
  private readonly msPerMiB = new Map<string, number>()
  /** Moving average over every parent: what an unmeasured one is assumed to take. */
  private overall = UNMEASURED_MS_PER_MIB
  private readonly offences = new Map<string, Offences>()
  private readonly maxPeers: number

  constructor (init: PeerStatsInit = {}) {
    this.speedWeight = init.speedWeight ?? DEFAULT_SPEED_EWMA_WEIGHT
    this.badPieceTaskBlock = init.badPieceTaskBlock ?? DEFAULT_BAD_PIECE_TASK_BLOCK
    this.badPieceMemory = init.badPieceMemory ?? DEFAULT_BAD_PIECE_MEMORY
    this.badPieceGlobalBlock = init.badPieceGlobalBlock ?? DEFAULT_BAD_PIECE_GLOBAL_BLOCK
    this.maxPeers = init.maxPeers ?? DEFAULT_MAX_STATS_PEERS
  }

  /**
   * A piece of `bytes` (its real length, not what a daemon reported) came from `peerId`
   * in `ms`. The sample is clamped to 1/10..10× the overall average, so one report (a
   * liar's, or a fluke) cannot move a parent's average, or the overall one, far.
   */
  recordTime (peerId: string, bytes: number, ms: number): void {
    if (bytes <= 0 || !Number.isFinite(ms) || ms < 0) {
      return
    }
    const before = this.msPerMiB.get(peerId)
    if (before == null && this.msPerMiB.size >= this.maxPeers) {
      return
    }
    const sample = Math.min(Math.max(ms / (bytes / (1024 * 1024)), this.overall / SPEED_SAMPLE_CLAMP), this.overall * SPEED_SAMPLE_CLAMP)
    const w = this.speedWeight
    this.msPerMiB.set(peerId, before == null ? sample : before * (1 - w) + sample * w)
    this.overall = this.overall * (1 - w / 10) + sample * (w / 10)
  }

  /** Expected milliseconds per MiB from this parent: its own average, or the overall one while unmeasured. */
  pieceTime (peerId: string): number {
    return this.msPerMiB.get(peerId) ?? this.overall
  }

  /**
   * `peerId` sent bytes that did not match the piece's digest (or length) for `taskId`.
   * `reporter` is the peer that received them. The first offence blocks it for that task;
   * another within the memory blocks it for every task, longer each time, once at least
   * two distinct reporters reported it: one member alone cannot shut a peer out of
   * every task.
   */
  recordBadBytes (taskId: string, peerId: string, reporter: string, now = Date.now()): void {
    let o = this.offences.get(peerId)
    if (o == null && this.offences.size >= this.maxPeers) {
      return
    }
    if (o == null || now - o.lastAt > this.badPieceMemory) {
      o = { count: 0, lastAt: now, globalUntil: o?.globalUntil ?? 0, tasks: o?.tasks ?? new Map(), reporters: new Set() }
      this.offences.set(peerId, o)
    }
    o.count++
    o.lastAt = now
    if (o.reporters.size < BAD_PIECE_GLOBAL_REPORTERS) {
      o.reporters.add(reporter)
    }
    // bounded: one entry per task it sent bad bytes for, swept when they run out
    o.tasks.set(taskId, now + this.badPieceTaskBlock)
    if (o.count >= 2 && o.reporters.size >= BAD_PIECE_GLOBAL_REPORTERS) {
      const block = Math.min(this.badPieceGlobalBlock * 2 ** (o.count - 2), MAX_BAD_PIECE_BLOCK)
      o.globalUntil = Math.max(o.globalUntil, now + block)
    }
  }

  /** Whether `peerId` may not be offered as a parent for `taskId` now, for bad bytes it sent. */
  isBlocked (taskId: string, peerId: string, now = Date.now()): boolean {
    const o = this.offences.get(peerId)
    if (o == null) {
      return false
    }
    return o.globalUntil > now || (o.tasks.get(taskId) ?? 0) > now
  }

  /** Drops what is known of a peer that left or expired. */
  forget (peerId: string): void {
    this.msPerMiB.delete(peerId)
    const o = this.offences.get(peerId)
    // offences outlive the peer's departure while they block: leaving and coming back
    // must not wash them out
    if (o != null && o.globalUntil <= Date.now() && Date.now() - o.lastAt > this.badPieceMemory) {
      this.offences.delete(peerId)
    }
  }

  /** Forgets expired blocks; called now and then, so offences stay bounded. */
  sweep (now = Date.now()): void {
    for (const [peerId, o] of this.offences) {
      for (const [taskId, until] of o.tasks) {
        if (until <= now) {
          o.tasks.delete(taskId)
        }
      }
      if (o.tasks.size === 0 && o.globalUntil <= now && now - o.lastAt > this.badPieceMemory) {
        this.offences.delete(peerId)
      }
    }
  }

  get size (): number {
    return this.msPerMiB.size + this.offences.size
  }
}
