import { once } from 'node:events'
import { DigestVerifier, StoreWriteError, type PieceStore, type TaskReader } from '@shoal/core'
import type { Download } from './download.ts'
import type { Writable } from 'node:stream'

/**
 * The rest of the content from `offset` on, straight from its source and not stored:
 * what a reader falls back to when this host cannot store the download (disk full).
 */
export type ContentFallback = (offset: number, options: { signal: AbortSignal }) => Promise<AsyncIterable<Uint8Array>>

export interface StreamContentOptions {
  signal: AbortSignal
  /** Called with the byte count of each chunk sent. */
  onBytes?: (bytes: number) => void
  /**
   * When the download fails because this host cannot store it, the bytes after those
   * sent come from here instead, hashed and held back the same way. @default none: the
   * failure is thrown
   */
  fallback?: ContentFallback
}

/** Bytes read from disk at once, and sent to the client in one write. */
const READ_SIZE = 1024 * 1024

/**
 * Read buffers per client. Each goes back to the pool once the client's socket took
 * its bytes, so a stream holds at most this many MiB however slow the client, and
 * allocates nothing after its first reads (fresh memory is what keeps the garbage
 * collector busy at hundreds of MB/s).
 */
const BUFFERS = 4

/** Buffers that come back when the socket has written them. */
class BufferPool {
  private readonly free: Buffer[] = []
  private readonly waiters: Array<(buf: Buffer) => void> = []
  private readonly size: number
  private readonly max: number
  private created = 0

  constructor (size: number, max: number) {
    this.size = size
    this.max = max
  }

  async take (signal: AbortSignal): Promise<Buffer> {
    const buf = this.free.pop()
    if (buf != null) {
      return buf
    }
    if (this.created < this.max) {
      this.created++
      return Buffer.allocUnsafeSlow(this.size)
    }
    signal.throwIfAborted()
    return new Promise<Buffer>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.splice(this.waiters.indexOf(deliver), 1)
        reject(signal.reason)
      }
      const deliver = (b: Buffer): void => {
        signal.removeEventListener('abort', onAbort)
        resolve(b)
      }
      this.waiters.push(deliver)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  give (buf: Buffer): void {
    const waiter = this.waiters.shift()
    if (waiter != null) {
      waiter(buf)
    } else {
      this.free.push(buf)
    }
  }
}

/**
 * Streams a download's content to `out` in order, as its verified prefix grows.
 *
 * When the download has a digest, the last chunk is held back until every byte has
 * hashed to it: a client never receives a complete body that was not verified. On a
 * mismatch this throws `DigestMismatchError` and the caller cuts the connection,
 * leaving the client with a short body that it will reject.
 *
 * @throws {StoreReadError} when the data on disk is shorter than the download says
 */
export async function streamContent (download: Download, store: Pick<PieceStore, 'openReader'>, out: Writable, options: StreamContentOptions): Promise<void> {
  const { signal } = options
  const verifier = download.digest != null ? new DigestVerifier(download.digest) : undefined
  const pool = new BufferPool(READ_SIZE, BUFFERS)
  let reader: TaskReader | undefined
  let sent = 0
  let held: { buf: Buffer, length: number, pooled: boolean } | undefined
  let writeError: Error | undefined

  /** Returns whether the socket wants more now (false: wait for 'drain'). */
  const send = (chunk: { buf: Buffer, length: number, pooled: boolean }): boolean => {
    if (writeError != null) {
      throw writeError
    }
    // the socket may keep the buffer until its bytes are out; it comes back to the pool then
    const more = out.write(chunk.buf.subarray(0, chunk.length), (err) => {
      if (err != null) {
        writeError ??= err
      }
      if (chunk.pooled) {
        pool.give(chunk.buf)
      }
    })
    options.onBytes?.(chunk.length)
    return more
  }

  try {
    // Bounded: each pass sends new bytes or waits for the download to change, and the
    // download itself ends (success, failure or timeout).
    while (true) {
      signal.throwIfAborted()
      const available = download.contiguous
      if (sent < available) {
        reader ??= await store.openReader(download.taskId)
        const buf = await pool.take(signal)
        const length = Math.min(READ_SIZE, available - sent)
        try {
          await reader.readFully(buf, sent, length)
        } catch (err) {
          pool.give(buf)
          throw err
        }
        verifier?.update(buf.subarray(0, length))
        if (held != null) {
          send(held)
        }
        held = { buf, length, pooled: true }
        sent += length
        continue
      }
      if (download.state === 'failed') {
        if (download.error instanceof StoreWriteError && options.fallback != null) {
          // bounded by the source's length (checked by the digest) and the signal
          for await (const chunk of await options.fallback(sent, { signal })) {
            signal.throwIfAborted()
            const buf = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
            verifier?.update(buf)
            if (held != null && !send(held)) {
              await once(out, 'drain', { signal })
            }
            held = { buf, length: buf.byteLength, pooled: false }
            sent += buf.byteLength
          }
          break
        }
        throw download.error ?? new Error('download failed')
      }
      if (download.state === 'success' && sent >= download.contiguous) {
        break
      }
      await download.waitForChange(signal)
    }

    verifier?.verify()
    if (held != null) {
      send(held)
    }
    if (writeError != null) {
      throw writeError
    }
  } finally {
    await reader?.close()
  }
}
