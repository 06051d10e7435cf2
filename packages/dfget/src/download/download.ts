import { ChangeNotifier, pieceCount, type ByteSource, type StoredPiece, type TaskState } from '@shoal/core'

export interface DownloadInit {
  taskId: string
  url: string
  digest?: string | undefined
  /** The task is keyed by digest and the supernode told the digest. @default true */
  shareByDigest?: boolean
}

/** How the content reached this host. */
export type DownloadVia = 'swarm' | 'origin' | 'local'

/**
 * One task's content arriving on this host: which pieces are on disk, how long the
 * in-order verified prefix is, and whether it is done. Readers stream the prefix as it
 * grows; any number of them can share one download.
 */
export class Download {
  readonly taskId: string
  readonly url: string
  readonly digest: string | undefined
  /** Whether the swarm knows this content by its digest (else by URL, the digest checked here only) */
  readonly shareByDigest: boolean
  state: TaskState = 'running'
  via: DownloadVia = 'swarm'
  /**
   * The piece digests this download checks against are final: the supernode's task had
   * already succeeded (whole-blob digest verified) when it handed them out. Only then may
   * a range be served before this host has the whole blob and checked its digest.
   */
  piecesFinal = false
  private registrations = 0
  error: Error | undefined
  contentLength: number | null = null
  pieceSize = 0
  /** Bytes [0, contiguous) are on disk in whole, recorded pieces. */
  contiguous = 0
  readonly have = new Map<number, number>()
  /** Bytes this download fetched, by where they came from (what prefetch jobs report). */
  readonly bytesBySource: Record<ByteSource, number> = { origin: 0, supernode: 0, peer: 0 }
  /** Resolves once the piece geometry is known (or the download failed): then a response can start. */
  readonly ready: Promise<void>
  private markReady: () => void
  private nextPiece = 0
  private readonly changes = new ChangeNotifier()

  constructor (init: DownloadInit) {
    this.taskId = init.taskId
    this.url = init.url
    this.digest = init.digest
    this.shareByDigest = init.shareByDigest ?? true
    const { promise, resolve } = Promise.withResolvers<void>()
    this.ready = promise
    this.markReady = resolve
  }

  get pieceCount (): number | null {
    return this.contentLength == null || this.pieceSize === 0 ? null : pieceCount(this.contentLength, this.pieceSize)
  }

  /**
   * The piece geometry is known. `contentLength` may still be null for a source that
   * did not say; the response is then sent without a length (chunked).
   */
  setGeometry (contentLength: number | null, pieceSize: number): void {
    this.contentLength = contentLength
    this.pieceSize = pieceSize
    this.markReady()
    this.notify()
  }

  /**
   * A supernode registered this download, its task already succeeded (`final`) or not.
   * Only ever lowers {@link piecesFinal} after the first: pieces recorded against one
   * supernode's unverified digests stay on this host when another takes over.
   */
  registered (final: boolean): void {
    this.piecesFinal = (this.registrations === 0 || this.piecesFinal) && final
    this.registrations++
  }

  addPiece (piece: StoredPiece): void {
    this.have.set(piece.num, piece.length)
    for (let len = this.have.get(this.nextPiece); len != null; len = this.have.get(this.nextPiece)) {
      this.contiguous += len
      this.nextPiece++
    }
    this.notify()
  }

  /** Forgets pieces (the geometry changed, or they failed verification). */
  resetPieces (): void {
    this.have.clear()
    this.contiguous = 0
    this.nextPiece = 0
    this.notify()
  }

  succeed (): void {
    this.contentLength = this.contiguous
    this.state = 'success'
    this.markReady()
    this.notify()
  }

  fail (error: Error): void {
    this.state = 'failed'
    this.error = error
    this.markReady()
    this.notify()
  }

  /** Resolves on the next change or when `signal` aborts. */
  async waitForChange (signal: AbortSignal): Promise<void> {
    if (this.state === 'running') {
      await this.changes.wait({ signal })
    }
  }

  private notify (): void {
    this.changes.notify()
  }
}
