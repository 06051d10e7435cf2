import { createHash, type Hash } from 'node:crypto'
import { PieceDigestMismatchError, PieceLengthMismatchError } from '../errors.ts'
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
 * Writes one piece at its offset while hashing it. Bytes past the piece's length are
 * refused, so a misbehaving sender cannot scribble over a neighbour.
 */
export class PieceWriter {
  readonly range: PieceRange
  private readonly file: FileHandle
  private readonly hash: Hash = createHash('sha256')
  private readonly options: PieceWriterOptions
  private readonly record: (piece: StoredPiece) => Promise<void>
  private written = 0
  private closed = false

  constructor (file: FileHandle, range: PieceRange, options: PieceWriterOptions, record: (piece: StoredPiece) => Promise<void>) {
    this.file = file
    this.range = range
    this.options = options
    this.record = record
  }

  get bytesWritten (): number {
    return this.written
  }

  async write (chunk: Uint8Array): Promise<void> {
    if (this.written + chunk.byteLength > this.range.length) {
      throw new PieceLengthMismatchError(`piece ${this.range.num} is ${this.range.length} bytes but more arrived`)
    }
    this.hash.update(chunk)
    let done = 0
    while (done < chunk.byteLength) {
      const { bytesWritten } = await this.file.write(chunk, done, chunk.byteLength - done, this.range.offset + this.written + done)
      done += bytesWritten
    }
    this.written += chunk.byteLength
  }

  /**
   * Checks length and digest, syncs the data to disk, then records the piece.
   *
   * @throws {PieceLengthMismatchError | PieceDigestMismatchError}
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
      await this.file.datasync()
      const piece: StoredPiece = { num: this.range.num, offset: this.range.offset, length: this.written, digest }
      await this.record(piece)
      return piece
    } finally {
      await this.close()
    }
  }

  async abort (): Promise<void> {
    await this.close()
  }

  private async close (): Promise<void> {
    if (!this.closed) {
      this.closed = true
      await this.file.close()
    }
  }
}
