import { DigestVerifier, type PieceStore } from '@shoal/core'
import type { Download } from './download.ts'
import type { Writable } from 'node:stream'

export interface StreamContentOptions {
  signal: AbortSignal
  /** Called with the byte count of each chunk sent. */
  onBytes?: (bytes: number) => void
}

/**
 * Streams a download's content to `out` in order, as its verified prefix grows.
 *
 * When the download has a digest, the last chunk is held back until every byte has
 * hashed to it: a client never receives a complete body that was not verified. On a
 * mismatch this throws `DigestMismatchError` and the caller cuts the connection,
 * leaving the client with a short body that it will reject.
 */
export async function streamContent (download: Download, store: PieceStore, out: Writable, options: StreamContentOptions): Promise<void> {
  const { signal } = options
  const verifier = download.digest != null ? new DigestVerifier(download.digest) : undefined
  let sent = 0
  let held: Buffer | undefined

  const send = async (chunk: Buffer): Promise<void> => {
    if (!out.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const cleanup = (): void => {
          out.off('drain', onDrain)
          out.off('close', onClose)
          signal.removeEventListener('abort', onAbort)
        }
        const onDrain = (): void => { cleanup(); resolve() }
        const onClose = (): void => { cleanup(); reject(new Error('client went away')) }
        const onAbort = (): void => { cleanup(); reject(signal.reason) }
        out.once('drain', onDrain)
        out.once('close', onClose)
        signal.addEventListener('abort', onAbort, { once: true })
      })
    }
    options.onBytes?.(chunk.byteLength)
  }

  // Bounded: each pass sends new bytes or waits for the download to change, and the
  // download itself ends (success, failure or timeout).
  while (true) {
    signal.throwIfAborted()
    const available = download.contiguous
    if (sent < available) {
      const data = store.createReadStream(download.taskId, sent, available)
      try {
        for await (const chunk of data as AsyncIterable<Buffer>) {
          verifier?.update(chunk)
          if (held != null) {
            await send(held)
          }
          held = chunk
          sent += chunk.byteLength
        }
      } finally {
        data.destroy()
      }
      continue
    }
    if (download.state === 'failed') {
      throw download.error ?? new Error('download failed')
    }
    if (download.state === 'success' && sent >= download.contiguous) {
      break
    }
    await download.waitForChange(signal)
  }

  verifier?.verify()
  if (held != null) {
    await send(held)
  }
}

