import { createHash } from 'node:crypto'
import { open, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import {
  API_PREFIX, createHttpDispatcher, DigestMismatchError, InvalidConfigError, parseDigest, ShoalError
} from '@shoal/core'
import { request, type Dispatcher } from 'undici'
import { ContentDigestMismatchError, DaemonRejectedError, DaemonUnreachableError, DownloadFailedError, OutputClosedError } from '../errors.ts'

export interface DownloadOptions {
  url: string
  output: string
  digest?: string | undefined
  headers: Record<string, string>
  daemon: string
  timeout: number
  signal: AbortSignal
  /**
   * Bytes written so far, the length when known, how the daemon got the content (local,
   * swarm, origin) and, while it is still arriving, the daemon's bytes by source (asked
   * every `sourcesInterval` only when this is given).
   */
  onProgress?: (progress: DownloadProgress) => void
  /** How often the daemon is asked where the bytes come from. @default 500 ms */
  sourcesInterval?: number
  /** Where `-o -` writes. @default process.stdout */
  stdout?: NodeJS.WritableStream
}

export interface DownloadProgress {
  written: number
  total: number | null
  via: string | undefined
  bySource?: Record<string, number>
}

export interface DownloadSummary {
  bytes: number
  digest: string
  ms: number
}

/**
 * `dfget <url> -o <file>`: asks the local daemon for the content (so the pieces stay on
 * this host for its peers), writes it to a temporary file beside the target, checks
 * the digest when one is given, syncs, and only then renames it into place. An
 * interrupted or failed download never leaves a partial file under the target name.
 */
export async function downloadToFile (options: DownloadOptions): Promise<DownloadSummary> {
  const started = performance.now()
  if (options.digest != null) {
    parseDigest(options.digest)
  }
  const dispatcher: Dispatcher = createHttpDispatcher({ headersTimeout: options.timeout, bodyTimeout: 60_000, maxRedirections: 0 })
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeout)])
  const toStdout = options.output === '-'
  const tmp = toStdout ? '' : join(dirname(options.output), `.${basename(options.output)}.${process.pid}.dfget-part`)

  const ask = async (): Promise<Dispatcher.ResponseData> => request(`${options.daemon}${API_PREFIX}/downloads`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url: options.url, ...(options.digest != null ? { digest: options.digest } : {}), ...(Object.keys(options.headers).length > 0 ? { headers: options.headers } : {}) }),
    signal,
    dispatcher
  })

  /**
   * The daemon cut the connection: when a digest was given, it may be because the
   * content did not match it (the body is cut, never wrong). Asked once more, the daemon
   * says so; any other answer is dropped unread.
   */
  const explainCut = async (err: unknown): Promise<Error> => {
    const cut = new DownloadFailedError(`download failed: ${(err as Error).message}`)
    if (options.digest == null || signal.aborted) {
      return cut
    }
    try {
      const again = await ask()
      const text = again.statusCode === 502 ? await again.body.text() : ''
      again.body.destroy()
      const json = JSON.parse(text === '' ? '{}' : text) as { errors?: Array<{ code?: string, message?: string }> }
      if (json.errors?.[0]?.code === 'DIGEST_INVALID') {
        return new ContentDigestMismatchError(`${options.url} does not match ${options.digest}: ${json.errors[0].message ?? ''}`)
      }
    } catch {}
    return cut
  }

  try {
    let res: Dispatcher.ResponseData
    try {
      res = await ask()
    } catch (err) {
      options.signal.throwIfAborted()
      if (isConnectError(err)) {
        throw new DaemonUnreachableError(`cannot reach the dfget daemon at ${options.daemon} (${(err as Error).message}); is 'dfget daemon' running?`)
      }
      throw await explainCut(err)
    }

    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => '')
      let message = text.slice(0, 500)
      let code: string | undefined
      try {
        const json = JSON.parse(text) as { errors?: Array<{ message?: string, code?: string }> }
        message = json.errors?.[0]?.message ?? message
        code = json.errors?.[0]?.code
      } catch {}
      if (code === 'DIGEST_INVALID') {
        throw new ContentDigestMismatchError(`${options.url} does not match ${options.digest ?? 'its digest'}: ${message}`)
      }
      throw res.statusCode === 400
        ? new DaemonRejectedError(`daemon refused the request: ${message}`)
        : new DownloadFailedError(`daemon answered ${res.statusCode}: ${message}`)
    }

    const algorithm = options.digest != null ? parseDigest(options.digest).algorithm : 'sha256'
    const hash = createHash(algorithm)
    let bytes = 0
    const file = toStdout ? undefined : await open(tmp, 'w', 0o644)
    const out = toStdout ? new PipeWriter(options.stdout ?? process.stdout) : undefined
    const total = Number.isFinite(Number(res.headers['content-length'])) ? Number(res.headers['content-length']) : null
    const via = typeof res.headers['x-shoal-via'] === 'string' ? res.headers['x-shoal-via'] : undefined
    const taskId = typeof res.headers['x-shoal-task-id'] === 'string' && /^[a-f0-9]{64}$/.test(res.headers['x-shoal-task-id']) ? res.headers['x-shoal-task-id'] : undefined
    const sources = options.onProgress != null && taskId != null && via !== 'local' ? watchSources(options.daemon, taskId, dispatcher, signal, options.sourcesInterval ?? 500) : undefined
    const progress = (): void => { options.onProgress?.({ written: bytes, total, via, ...(sources?.latest != null ? { bySource: sources.latest } : {}) }) }
    try {
      progress()
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        hash.update(chunk)
        bytes += chunk.byteLength
        if (file != null) {
          await file.write(chunk)
        } else {
          await out?.write(chunk)
        }
        progress()
      }
      if (sources != null) {
        // the daemon's last word on where the bytes came from, for the final line
        sources.stop()
        await sources.ask()
        progress()
      }
      const expectedLength = Number(res.headers['content-length'])
      if (Number.isFinite(expectedLength) && bytes !== expectedLength) {
        throw new DownloadFailedError(`download ended after ${bytes} of ${expectedLength} bytes`)
      }
      await file?.sync()
    } finally {
      sources?.stop()
      await file?.close()
      out?.release()
      // cut at once (a reader that went away, a failure): no waiting on the body's timeout
      res.body.destroy()
    }

    const digest = `${algorithm}:${hash.digest('hex')}`
    if (options.digest != null && digest !== options.digest) {
      throw new DigestMismatchError(options.digest, digest)
    }
    if (!toStdout) {
      await rename(tmp, options.output)
    }
    return { bytes, digest, ms: performance.now() - started }
  } catch (err) {
    if (!toStdout) {
      await rm(tmp, { force: true })
    }
    if (err instanceof ShoalError) {
      throw err
    }
    if (isEpipe(err)) {
      throw new OutputClosedError('the output was closed (EPIPE)')
    }
    if (options.signal.aborted) {
      throw err
    }
    throw await explainCut(err)
  } finally {
    await dispatcher.close()
  }
}

/** Parses repeated `--header 'Name: value'` flags. */
export function parseHeaders (values: string[]): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const value of values) {
    const i = value.indexOf(':')
    const name = value.slice(0, i).trim()
    if (i <= 0 || !/^[A-Za-z0-9-]+$/.test(name)) {
      throw new InvalidConfigError(`--header ${JSON.stringify(value)}: expected 'Name: value'`)
    }
    headers[name.toLowerCase()] = value.slice(i + 1).trim()
  }
  return headers
}

function isEpipe (err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'EPIPE' || (err as NodeJS.ErrnoException)?.code === 'ERR_STREAM_DESTROYED'
}

/**
 * Writes to stdout with back-pressure, and turns the reader going away (EPIPE, which
 * arrives as an 'error' event, not a thrown error) into an {@link OutputClosedError}
 * for the write in progress or the next one, instead of a crash or a wait for a
 * 'drain' that never comes.
 */
class PipeWriter {
  private readonly stream: NodeJS.WritableStream
  private closed: Error | undefined
  private wake: (() => void) | undefined
  private readonly onError = (err: Error): void => {
    this.closed = err
    this.wake?.()
  }

  constructor (stream: NodeJS.WritableStream) {
    this.stream = stream
    stream.on('error', this.onError)
  }

  async write (chunk: Uint8Array): Promise<void> {
    this.throwIfClosed()
    if (this.stream.write(chunk)) {
      return
    }
    // bounded: 'drain' or 'error' (the reader went away) ends the wait
    await new Promise<void>(resolve => {
      this.wake = resolve
      this.stream.once('drain', resolve)
    })
    this.stream.off('drain', this.wake ?? (() => {}))
    this.wake = undefined
    this.throwIfClosed()
  }

  /** Keeps swallowing late EPIPE errors (the stream may still flush), so none crashes the process. */
  release (): void {
    this.stream.off('error', this.onError)
    this.stream.on('error', () => {})
  }

  private throwIfClosed (): void {
    if (this.closed != null) {
      throw isEpipe(this.closed) ? new OutputClosedError('the output was closed (EPIPE)') : this.closed
    }
  }
}

/** Errors that mean nothing answered at the daemon's address (as opposed to a connection it cut). */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT'])

function isConnectError (err: unknown): boolean {
  // bounded: a cause chain a few links long
  let e = err as { code?: unknown, cause?: unknown } | undefined
  for (let depth = 0; depth < 5 && e != null; depth++) {
    if (typeof e.code === 'string' && CONNECT_ERRORS.has(e.code)) {
      return true
    }
    e = e.cause as typeof e
  }
  return false
}

/**
 * Asks the daemon now and then where a download's bytes come from, until stopped or
 * the download is no longer running there. Best effort: a failed ask is skipped.
 */
function watchSources (daemon: string, taskId: string, dispatcher: Dispatcher, signal: AbortSignal, interval: number): { latest?: Record<string, number>, stop: () => void, ask: () => Promise<void> } {
  const state: { latest?: Record<string, number>, stop: () => void, ask: () => Promise<void> } = { stop: () => {}, ask: async () => {} }
  let stopped = false
  let timer: NodeJS.Timeout | undefined
  const ask = async (): Promise<void> => {
    try {
      const res = await request(`${daemon}${API_PREFIX}/downloads/${taskId}`, { signal: AbortSignal.any([signal, AbortSignal.timeout(2_000)]), dispatcher })
      if (res.statusCode !== 200) {
        await res.body.dump()
        stopped = true
        return
      }
      const json = await res.body.json() as { bytesBySource?: Record<string, number> }
      if (json.bytesBySource != null) {
        state.latest = json.bytesBySource
      }
    } catch {}
  }
  const tick = (): void => {
    ask().finally(() => {
      if (!stopped && !signal.aborted) {
        timer = setTimeout(tick, interval)
        timer.unref()
      }
    }).catch(() => {})
  }
  tick()
  state.ask = ask
  state.stop = () => {
    stopped = true
    clearTimeout(timer)
  }
  return state
}
