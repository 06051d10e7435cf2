import { createHash, type Hash } from 'node:crypto'
import { PieceDigestMismatchError, PieceLengthMismatchError, StoreWriteError } from '../errors.ts'
import type { PieceRange } from '../pieces.ts'
import type { FileHandle } from 'node:fs/promises'

/** A piece that is on disk, synced, and verified against `digest`. */
export interface StoredPiece extends PieceRange {
  digest: string
}

export interface PieceWriterOptions {
  /** Refuse the piece unless it hashes to this. */
  expectedDigest?: string
  /**
   * The range's length is an upper bound: the last piece of content streamed without a
   * known length. `commit()` then accepts fewer bytes and records the shorter range.
   */
  mayEndShort?: boolean
}

/**
 * Bytes gathered before they go to disk in one `writev`: chunks arrive from the network
 * at 16 to 64 KiB, and one system call (and one trip through the thread pool) per chunk
 * costs more than the copy it would save.
 */
export const WRITE_BATCH_BYTES = 1024 * 1024

/** Writes all of `buffers` at `position`, however many calls `writev` needs. */
async function writevAll (file: FileHandle, buffers: Uint8Array[], position: number): Promise<void> {
  let pending = buffers
  let at = position
  // bounded: every pass writes at least one byte, or throws
  while (pending.length > 0) {
    const { bytesWritten } = await file.writev(pending, at)
    if (bytesWritten <= 0) {
      throw new Error(`writev at ${at} wrote nothing`)
    }
    at += bytesWritten
    let skip = bytesWritten
    const rest: Uint8Array[] = []
    for (const buf of pending) {
      if (skip >= buf.byteLength) {
        skip -= buf.byteLength
        continue
      }
      rest.push(skip > 0 ? buf.subarray(skip) : buf)
      skip = 0
    }
    pending = rest
  }
}

/**
 * Writes one piece at its offset while hashing it. Chunks are hashed as they arrive and
 * written in batches of {@link WRITE_BATCH_BYTES}; `write()` waits while a batch is
 * being written, so a writer holds at most one batch. Bytes past the piece's length are
 * refused, so a misbehaving sender cannot scribble over a neighbour.
 *
 * `commit()` checks length and digest; the piece is then recorded by the store, which
 * syncs data and index for many pieces at once (see `PieceStore.recordPiece`).
 */
export class PieceWriter {
  readonly range: PieceRange
  private readonly file: FileHandle
  private readonly hash: Hash = createHash('sha256')
  private readonly options: PieceWriterOptions
  private readonly record: (piece: StoredPiece) => Promise<void>
  private written = 0
  private flushed = 0
  private batch: Uint8Array[] = []
  private batchBytes = 0
  private closed = false
  private readonly onClose: (() => void) | undefined

  /** `onClose` runs once when the writer is done (committed, failed or aborted). */
  constructor (file: FileHandle, range: PieceRange, options: PieceWriterOptions, record: (piece: StoredPiece) => Promise<void>, onClose?: () => void) {
    this.file = file
    this.range = range
    this.options = options
    this.record = record
    this.onClose = onClose
  }

  get bytesWritten (): number {
    return this.written
  }

  /**
   * Takes a chunk. The caller must not change it afterwards: it may be written later.
   *
   * @throws {StoreWriteError} when a batch cannot be written (a full disk)
   */
  async write (chunk: Uint8Array): Promise<void> {
    if (this.written + chunk.byteLength > this.range.length) {
      throw new PieceLengthMismatchError(`piece ${this.range.num} is ${this.range.length} bytes but more arrived`)
    }
    if (chunk.byteLength === 0) {
      return
    }
    this.hash.update(chunk)
    this.batch.push(chunk)
    this.batchBytes += chunk.byteLength
    this.written += chunk.byteLength
    if (this.batchBytes >= WRITE_BATCH_BYTES) {
      await this.flush()
    }
  }

  private async flush (): Promise<void> {
    if (this.batchBytes === 0) {
      return
    }
    const buffers = this.batch
    const at = this.range.offset + this.flushed
    this.flushed += this.batchBytes
    this.batch = []
    this.batchBytes = 0
    try {
      await writevAll(this.file, buffers, at)
    } catch (err) {
      throw new StoreWriteError(`cannot write piece ${this.range.num} at ${at}: ${(err as Error).message}`, { cause: err })
    }
  }

  /**
   * Checks length and digest, writes what is left, then has the piece recorded: synced
   * to disk and entered in the index. Resolves once it is durable.
   *
   * @throws {PieceLengthMismatchError | PieceDigestMismatchError}
   * @throws {StoreWriteError} when the bytes cannot be written or synced (a full disk): nothing is recorded
   */
  async commit (): Promise<StoredPiece> {
    try {
      const short = this.options.mayEndShort === true && this.written > 0 && this.written < this.range.length
      if (this.written !== this.range.length && !short) {
        throw new PieceLengthMismatchError(`piece ${this.range.num} is ${this.range.length} bytes but ${this.written} arrived`)
      }
      const digest = `sha256:${this.hash.digest('hex')}`
      const expected = this.options.expectedDigest
      if (expected != null && digest !== expected) {
        throw new PieceDigestMismatchError(`piece ${this.range.num} hashed to ${digest}, expected ${expected}`)
      }
      await this.flush()
      await this.close()
      const piece: StoredPiece = { num: this.range.num, offset: this.range.offset, length: this.written, digest }
      try {
        await this.record(piece)
      } catch (err) {
        throw err instanceof StoreWriteError ? err : new StoreWriteError(`cannot record piece ${this.range.num}: ${(err as Error).message}`, { cause: err })
      }
      return piece
    } finally {
      await this.close()
    }
  }

  async abort (): Promise<void> {
    this.batch = []
    this.batchBytes = 0
    await this.close()
  }

  private async close (): Promise<void> {
    if (!this.closed) {
      this.closed = true
      try {
        await this.file.close()
      } finally {
        this.onClose?.()
      }
    }
  }
}
