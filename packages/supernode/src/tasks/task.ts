import { pieceCount, type StoredPiece, type TaskError, type TaskState } from '@shoal/core'

/**
 * What the scheduler hears of a task's changes, to wake only the long polls a change
 * can help (see `Waiters`).
 */
export interface TaskListener {
  /** The supernode now holds piece `num`. */
  pieceAdded: (task: Task, num: number) => void
  /** `peerId` reported holding piece `num`. */
  holderAdded: (task: Task, num: number, peerId: string) => void
  /** The task started, finished, failed, restarted or lost pieces: every waiter looks again. */
  stateChanged: (task: Task) => void
}

export interface TaskInit {
  id: string
  url: string
  digest?: string | undefined
}

/**
 * The supernode's view of one piece of content: what it has cut from the source so
 * far, and which peers hold which pieces. Its listener (the scheduler) hears of changes.
 *
 * A task holds no credentials: the registration that starts a fetch hands its headers
 * to that fetch alone, so they go to that registrant's URL and are gone when it ends.
 */
export class Task {
  readonly id: string
  /** Where the content is fetched from: the URL of the registration that started the current fetch. */
  url: string
  readonly digest: string | undefined
  state: TaskState = 'running'
  contentLength: number | null = null
  /** Known once the source has answered; see `ready`. */
  pieceSize = 0
  error: TaskError | undefined
  /** When the task last failed, for the negative cache. */
  failedAt = 0
  /** Pieces the supernode holds, by number. */
  readonly pieces = new Map<number, StoredPiece>()
  /** Peers that reported holding each piece. */
  readonly holders = new Map<number, Set<string>>()
  /** Resolves once the source answered (length and piece size known) or failed. */
  ready: Promise<void>
  private markReady: () => void
  /** Set by the scheduler's service; nothing is told before. */
  listener: TaskListener | undefined
  /** When a peer last asked about this task (ms since the epoch), for idle eviction. */
  lastAsked = Date.now()

  constructor (init: TaskInit) {
    this.id = init.id
    this.url = init.url
    this.digest = init.digest
    const { promise, resolve } = Promise.withResolvers<void>()
    this.ready = promise
    this.markReady = resolve
  }

  get pieceCount (): number | null {
    return this.contentLength == null || this.pieceSize === 0 ? null : pieceCount(this.contentLength, this.pieceSize)
  }

  /** The source answered: from here pieces can be named. */
  start (contentLength: number | null, pieceSize: number): void {
    this.contentLength = contentLength
    this.pieceSize = pieceSize
    this.markReady()
    this.changed()
  }

  addPiece (piece: StoredPiece): void {
    this.pieces.set(piece.num, piece)
    this.listener?.pieceAdded(this, piece.num)
  }

  succeed (contentLength: number): void {
    this.contentLength = contentLength
    this.state = 'success'
    this.markReady()
    this.changed()
  }

  fail (error: TaskError): void {
    this.state = 'failed'
    this.error = error
    this.failedAt = Date.now()
    this.pieces.clear()
    this.holders.clear()
    this.markReady()
    this.changed()
  }

  /**
   * Starts over after a failure: same content, fresh fetch, from the new registrant's
   * URL (a digest task may be registered under several), with its headers.
   */
  reset (url: string): void {
    this.url = url
    this.state = 'running'
    this.error = undefined
    this.contentLength = null
    this.pieceSize = 0
    const { promise, resolve } = Promise.withResolvers<void>()
    this.ready = promise
    this.markReady = resolve
    this.changed()
  }

  addHolder (num: number, peerId: string): void {
    if (!this.pieces.has(num)) {
      return
    }
    let set = this.holders.get(num)
    if (set == null) {
      set = new Set()
      this.holders.set(num, set)
    }
    if (!set.has(peerId)) {
      set.add(peerId)
      this.listener?.holderAdded(this, num, peerId)
    }
  }

  /** A peer no longer has this piece (it said NOT_FOUND: evicted, or its file was damaged). */
  removeHolder (num: number, peerId: string): void {
    this.holders.get(num)?.delete(peerId)
  }

  holds (num: number, peerId: string): boolean {
    return this.holders.get(num)?.has(peerId) ?? false
  }

  /** How many pieces a peer holds. */
  heldBy (peerId: string): number {
    let n = 0
    for (const set of this.holders.values()) {
      if (set.has(peerId)) {
        n++
      }
    }
    return n
  }

  removePeer (peerId: string): void {
    for (const set of this.holders.values()) {
      set.delete(peerId)
    }
  }

  /** Forgets who holds what (an idle task's holder map is evicted); announces bring holders back. */
  clearHolders (): void {
    this.holders.clear()
  }

  /** Something every waiter may care about changed (state, pieces withdrawn). */
  changed (): void {
    this.listener?.stateChanged(this)
  }
}
