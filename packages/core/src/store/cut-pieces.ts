import { SourceUnavailableError } from '../errors.ts'
import { pieceRange } from '../pieces.ts'
import type { PieceStore } from './piece-store.ts'
import type { PieceWriter, StoredPiece } from './piece-writer.ts'
import type { RateLimit } from '../rate/token-bucket.ts'

export interface CutPiecesOptions {
  /** Total content length, or null when the source did not say. */
  contentLength: number | null
  pieceSize: number
  /** The body starts at this piece's offset (a resumed Range fetch). @default 0 */
  firstPiece?: number
  /** Called with each piece once it is synced and recorded. */
  onPiece: (piece: StoredPiece) => void
  /** Called with every chunk as it arrives, before it is written. */
  onChunk?: (chunk: Uint8Array) => void
  signal?: AbortSignal
  /**
   * Waited on for each chunk's bytes before the next chunk is read, so a limited
   * download slows the source (the body pauses) instead of buffering it. @default none
   */
  limit?: RateLimit
}

/**
 * Cuts a byte stream into pieces in the store, recording each piece the moment it is
 * whole, so readers can start on piece 0 while later pieces still stream in.
 *
 * @returns the number of bytes read from `body`
 * @throws {SourceUnavailableError} when the body is longer or shorter than announced
 */
export async function cutIntoPieces (store: PieceStore, taskId: string, body: AsyncIterable<Uint8Array>, options: CutPiecesOptions): Promise<number> {
  const { contentLength, pieceSize } = options
  const firstPiece = options.firstPiece ?? 0
  const expected = contentLength == null ? null : contentLength - firstPiece * pieceSize
  let writer: PieceWriter | undefined
  let num = firstPiece
  let total = 0

  try {
    for await (const buf of body) {
      options.signal?.throwIfAborted()
      let chunk = buf
      options.onChunk?.(chunk)
      if (expected != null && total + chunk.byteLength > expected) {
        throw new SourceUnavailableError(`source sent more than the ${contentLength} bytes it announced`)
      }
      total += chunk.byteLength

      while (chunk.byteLength > 0) {
        if (writer == null) {
          writer = contentLength == null
            // with no length known, any piece may turn out to be the short last one
            ? await store.openPieceWriter(taskId, { num, offset: num * pieceSize, length: pieceSize }, { mayEndShort: true })
            : await store.openPieceWriter(taskId, pieceRange(num, contentLength, pieceSize))
        }
        const part = chunk.subarray(0, writer.range.length - writer.bytesWritten)
        chunk = chunk.subarray(part.byteLength)
        await writer.write(part)
        if (writer.bytesWritten === writer.range.length) {
          const done = writer
          writer = undefined
          options.onPiece(await done.commit())
          num++
        }
      }
      await options.limit?.take(buf.byteLength, options.signal != null ? { signal: options.signal } : {})
    }

    if (expected != null && total !== expected) {
      throw new SourceUnavailableError(`source ended after ${total} of ${expected} bytes`)
    }
    if (writer != null) {
      const last = writer
      writer = undefined
      options.onPiece(await last.commit())
    }
    return total
  } finally {
    await writer?.abort()
  }
}
