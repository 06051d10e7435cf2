import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { DigestMismatchError, type PieceStore, type RouteContext, type StoredPiece, type TaskReader } from '@shoal/core'
import { resolveRange, unsatisfiable, type ByteRange, type RangeRequest } from './range.ts'
import { RangeUnservableError } from '../errors.ts'
import { downloadError, openDownload, sendDownload, type SendDownloadComponents } from './send-download.ts'
import type { Download } from '../download/download.ts'
import type { DownloadRequest } from '../download/download-manager.ts'

/** Bytes read from disk at once, for hashing a piece and for sending it. */
const READ_SIZE = 1024 * 1024

/**
 * Answers a single-range blob request with a 206.
 *
 * What "verified" means for a range: no byte is sent unless the whole-blob digest backs
 * it. Either this host has the whole blob and checked its digest (the range then comes
 * from disk), or the piece digests it checked the pieces against are final: the
 * supernode's task had already succeeded — its whole-blob digest verified — when it
 * handed them out; only then is a range served as soon as its pieces are here, before
 * the rest of the blob. Piece digests published while the supernode is still fetching
 * from the origin, or computed here from the origin's bytes, are not: the range waits
 * for the download to complete and be verified. Either way every piece a range touches
 * is read back from disk and hashed against the sha256 recorded for it before any of its
 * bytes is sent; a piece that no longer matches is a cut connection and a deleted copy,
 * never a wrong byte.
 */
export async function sendBlobRange (ctx: RouteContext, components: SendDownloadComponents, request: DownloadRequest, range: Extract<RangeRequest, { kind: 'from' | 'suffix' }>, headers: Record<string, string>): Promise<void> {
  const { res, signal } = ctx
  const download = await openDownload(components, request, signal)
  // bounded: each pass waits for a change of a download that ends (success, failure, timeout)
  while (download.state === 'running' && !download.piecesFinal) {
    // piece digests not backed by a verified whole-blob digest: wait for this host's own check
    await download.waitForChange(signal)
  }
  if (download.state === 'failed') {
    throw downloadError(download.error)
  }
  const size = download.contentLength
  if (size == null || download.pieceSize <= 0) {
    // a source that did not say its length: no range can be placed; the whole body is a
    // right answer to a Range request (RFC 9110 §14.2)
    await sendDownload(ctx, components, request, headers)
    return
  }
  const bytes = resolveRange(range, size)
  if (bytes == null) {
    throw unsatisfiable(size)
  }

  let reader: TaskReader | undefined
  try {
    const pieceSize = download.pieceSize
    const firstPiece = Math.floor(bytes.start / pieceSize)
    const lastPiece = Math.floor(bytes.end / pieceSize)
    // bounded: one pass per piece of the range
    for (let num = firstPiece; num <= lastPiece; num++) {
      await waitForPiece(download, num, pieceSize, signal)
      reader ??= await components.store.openReader(download.taskId)
      const piece = await verifiedPiece(components.store, reader, download.taskId, num, pieceSize)
      if (num === firstPiece) {
        res.writeHead(206, {
          ...headers,
          'content-type': 'application/octet-stream',
          'content-length': String(bytes.end - bytes.start + 1),
          'content-range': `bytes ${bytes.start}-${bytes.end}/${size}`
        })
      }
      await sendSlice(reader, piece, bytes, res, signal, (n) => { components.metrics.servedBytes.inc(n) })
    }
    res.end()
  } catch (err) {
    if (err instanceof DigestMismatchError) {
      await components.downloads.invalidate(download.taskId, `a piece read back from disk ${err.message}`)
    }
    throw err
  } finally {
    await reader?.close()
  }
}

/** Waits until piece `num` is recorded on this host (the download goes on by itself and ends). */
async function waitForPiece (download: Download, num: number, pieceSize: number, signal: AbortSignal): Promise<void> {
  // bounded: each pass waits for a change of a download that ends (success, failure, timeout)
  while (true) {
    signal.throwIfAborted()
    if (download.pieceSize !== pieceSize) {
      // the origin answered with other content than the swarm announced: what was planned
      // no longer holds, and a client half-served is cut, not misled
      throw new RangeUnservableError(`the piece geometry of ${download.taskId} changed while a range of it was served`)
    }
    if (download.have.has(num)) {
      return
    }
    if (download.state === 'failed') {
      throw downloadError(download.error)
    }
    if (download.state === 'success') {
      throw new RangeUnservableError(`piece ${num} of ${download.taskId} is missing from a complete download`)
    }
    await download.waitForChange(signal)
  }
}

/** Reads piece `num` back from disk and checks it against its recorded sha256. */
async function verifiedPiece (store: Pick<PieceStore, 'getPiece'>, reader: TaskReader, taskId: string, num: number, pieceSize: number): Promise<StoredPiece> {
  const piece = await store.getPiece(taskId, num)
  if (piece == null || piece.offset !== num * pieceSize) {
    throw new RangeUnservableError(`piece ${num} of ${taskId} is not recorded where it should be`)
  }
  const [algorithm, expected] = piece.digest.split(':')
  const hash = createHash(algorithm ?? 'sha256')
  const buf = Buffer.allocUnsafe(Math.min(READ_SIZE, piece.length))
  // bounded: the piece's length, READ_SIZE at a time
  for (let done = 0; done < piece.length;) {
    const length = Math.min(buf.byteLength, piece.length - done)
    await reader.readFully(buf, piece.offset + done, length)
    hash.update(buf.subarray(0, length))
    done += length
  }
  const actual = hash.digest('hex')
  if (actual !== expected) {
    // the piece rotted on disk since it was recorded
    throw new DigestMismatchError(piece.digest, `${algorithm ?? 'sha256'}:${actual}`)
  }
  return piece
}

/** Sends the part of `piece` inside `bytes`, READ_SIZE at a time, waiting for the socket. */
async function sendSlice (reader: TaskReader, piece: StoredPiece, bytes: ByteRange, out: NodeJS.WritableStream, signal: AbortSignal, onBytes: (n: number) => void): Promise<void> {
  const from = Math.max(bytes.start, piece.offset)
  const to = Math.min(bytes.end + 1, piece.offset + piece.length)
  // bounded: the slice's length, READ_SIZE at a time
  for (let position = from; position < to;) {
    signal.throwIfAborted()
    const length = Math.min(READ_SIZE, to - position)
    // a fresh buffer: the socket may hold it until its bytes are out
    const buf = Buffer.allocUnsafe(length)
    await reader.readFully(buf, position, length)
    onBytes(length)
    if (!out.write(buf)) {
      await once(out, 'drain', { signal })
    }
    position += length
  }
}
