import { API_PREFIX, createHttpDispatcher, type PullJobView } from '@shoal/core'
import { request, type Dispatcher } from 'undici'
import { DaemonRejectedError, DaemonUnreachableError, PrefetchFailedError } from '../errors.ts'

export interface PrefetchOptions {
  image: string
  platforms?: string[] | undefined
  daemon: string
  /** Longest the whole prefetch may take. */
  timeout: number
  /** How often the job is looked at. @default 500 ms */
  pollInterval?: number
  signal: AbortSignal
  onProgress?: (job: PullJobView) => void
}

/**
 * `dfget prefetch <image>`: asks the local daemon to pull an image's layers into this
 * host's store (`POST /api/v1/prefetch`), then follows the job until it ends.
 *
 * @throws {DaemonUnreachableError} {@link DaemonRejectedError} (a 400: the reference or a platform) {@link PrefetchFailedError}
 */
export async function prefetchImage (options: PrefetchOptions): Promise<PullJobView> {
  const dispatcher: Dispatcher = createHttpDispatcher({ headersTimeout: 30_000, bodyTimeout: 30_000, maxRedirections: 0 })
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeout)])
  const call = async (method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number, json: unknown }> => {
    let res: Dispatcher.ResponseData
    try {
      res = await request(`${options.daemon}${API_PREFIX}${path}`, {
        method,
        ...(body != null ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
        signal: AbortSignal.any([signal, AbortSignal.timeout(30_000)]),
        dispatcher
      })
    } catch (err) {
      options.signal.throwIfAborted()
      if (signal.aborted) {
        throw new PrefetchFailedError(`prefetch of ${options.image} did not finish within ${options.timeout} ms`)
      }
      throw new DaemonUnreachableError(`cannot reach the dfget daemon at ${options.daemon} (${(err as Error).message}); is 'dfget daemon' running?`)
    }
    const text = await res.body.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = { errors: [{ message: text.slice(0, 300) }] }
    }
    return { status: res.statusCode, json }
  }
  const message = (json: unknown): string => (json as { errors?: Array<{ message?: string }> }).errors?.[0]?.message ?? JSON.stringify(json).slice(0, 300)

  try {
    const created = await call('POST', '/prefetch', { image: options.image, ...(options.platforms != null && options.platforms.length > 0 ? { platforms: options.platforms } : {}) })
    if (created.status !== 202) {
      throw created.status === 400
        ? new DaemonRejectedError(`daemon refused the prefetch: ${message(created.json)}`)
        : new PrefetchFailedError(`daemon answered ${created.status}: ${message(created.json)}`)
    }
    const id = (created.json as { id: string }).id
    // bounded by the timeout in `signal`
    for (;;) {
      const got = await call('GET', `/prefetch/${encodeURIComponent(id)}`)
      if (got.status !== 200) {
        throw new PrefetchFailedError(`daemon answered ${got.status} for prefetch job ${id}: ${message(got.json)}`)
      }
      const job = got.json as PullJobView
      options.onProgress?.(job)
      if (job.state === 'succeeded') {
        return job
      }
      if (job.state === 'failed') {
        throw new PrefetchFailedError(`prefetch of ${options.image} failed: ${job.error ?? 'unknown reason'}`)
      }
      await new Promise(resolve => setTimeout(resolve, options.pollInterval ?? 500))
      if (signal.aborted) {
        options.signal.throwIfAborted()
        throw new PrefetchFailedError(`prefetch of ${options.image} did not finish within ${options.timeout} ms (job ${id} goes on in the daemon)`)
      }
    }
  } finally {
    await dispatcher.close()
  }
}
