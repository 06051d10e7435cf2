import { pipeline, Transform, type Readable } from 'node:stream'
import { SourceTooLargeError, SourceUnavailableError } from '../errors.ts'

/**
 * At most `max` holders at once; the rest wait in order, each bounded by its signal.
 * A released slot goes straight to the next waiter, so a late caller cannot jump the queue.
 */
export class FetchSlots {
  private readonly max: number
  private open = 0
  private readonly waiters: Array<{ grant: () => void }> = []

  constructor (max: number) {
    this.max = max
  }

  /** Slots taken right now. */
  get inUse (): number {
    return this.open
  }

  /**
   * Resolves with the slot's release function (safe to call more than once).
   * @throws the signal's reason when it aborts first
   */
  async acquire (signal: AbortSignal): Promise<() => void> {
    signal.throwIfAborted()
    if (this.open < this.max) {
      this.open++
      return this.releaser()
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        grant: () => {
          signal.removeEventListener('abort', onAbort)
          resolve(this.releaser())
        }
      }
      const onAbort = (): void => {
        const at = this.waiters.indexOf(waiter)
        if (at !== -1) {
          this.waiters.splice(at, 1)
        }
        reject(signal.reason)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(waiter)
    })
  }

  private releaser (): () => void {
    let released = false
    return () => {
      if (released) {
        return
      }
      released = true
      const next = this.waiters.shift()
      if (next != null) {
        next.grant() // the slot passes on: `open` stays the same
      } else {
        this.open--
      }
    }
  }
}

export interface GuardBodyOptions {
  /** The Content-Length the source announced, or null. */
  declaredLength: number | null
  /** The most this component accepts. */
  maxBytes: number
  /** Where the bytes come from, for error messages (no query: it may hold a signature). */
  label: string
  /** Called once when the body ends, fails or is destroyed. */
  onClose: () => void
}

/**
 * Passes a source body through, cutting it off with an error the moment it exceeds its
 * declared length (a source that lies about its length) or the size cap, so no layer
 * can run a disk or a pipe without bound. Destroying the returned stream destroys the
 * source body.
 */
export function guardBody (source: Readable, options: GuardBodyOptions): Readable {
  const { declaredLength, maxBytes, label } = options
  let received = 0
  const guard = new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      received += chunk.byteLength
      if (declaredLength != null && received > declaredLength) {
        callback(new SourceUnavailableError(`${label} sent more than the ${declaredLength} bytes it announced`))
        return
      }
      if (received > maxBytes) {
        callback(new SourceTooLargeError(maxBytes, `${label} sent more than ${maxBytes} bytes, the most accepted (--max-source-bytes)`))
        return
      }
      callback(null, chunk)
    }
  })
  guard.once('close', options.onClose)
  // errors travel both ways: a failing source destroys the guard with its error, a
  // destroyed guard destroys the source (and its connection)
  pipeline(source, guard, () => {})
  return guard
}

/** Reads a body up to `limit` bytes (so the connection can be reused), then drops the rest. */
export async function drainBody (body: Readable, limit: number): Promise<void> {
  let seen = 0
  try {
    for await (const chunk of body) {
      seen += (chunk as Buffer).byteLength
      if (seen > limit) {
        break
      }
    }
  } catch {
    // the body failing is no concern here: nobody wanted it
  } finally {
    body.destroy()
  }
}
