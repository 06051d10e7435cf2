import { ChangeNotifier, pieceCount, type StoredPiece, type TaskError, type TaskState } from '@shoal/core'

export interface TaskInit {
  id: string
  url: string
  digest?: string | undefined
}

/**
 * The supernode's view of one piece of content: what it has cut from the source so
 * far, and which peers hold which pieces. Waiters (long polls) are woken on change.
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
  private readonly changes = new ChangeNotifier()

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
    this.changed()
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
      this.changed()
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

  /** Resolves on the next change, after `ms`, or when `signal` aborts, whichever is first. */
  async waitForChange (ms: number, signal?: AbortSignal): Promise<void> {
    await this.changes.wait({ ms, ...(signal != null ? { signal } : {}) })
  }

  /** Wakes waiters: something they may be waiting on (a transfer slot, a holder) changed. */
  changed (): void {
    this.changes.notify()
  }
}
