import { getJob, startJob, type BytesBySource, type Job, type JobApi, type JobState } from './api.ts'
import { DEFAULT_CONCURRENCY, DEFAULT_POLL_INTERVAL, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TIMEOUT, MAX_POLL_ERRORS } from './constants.ts'
import { PrefetchTimeoutError } from './errors.ts'
import type { PrefetchHost } from './select-hosts.ts'

export type HostState = 'pending' | JobState

/** Where one host (or one supernode's preheat) stands; what progress and the table show. */
export interface TargetStatus {
  /** `daemon` for a host's prefetch, `supernode` for a preheat */
  kind: 'daemon' | 'supernode'
  /** The host's name, or the supernode's API URL */
  name: string
  url: string
  state: HostState
  error?: string
  /** Summed over the images; null while some image's size is unknown */
  totalBytes: number | null
  completedBytes: number
  bytesBySource: BytesBySource
  /** ms from this target's first request to its end (or now) */
  durationMs: number
  jobs: Array<{ image: string, id?: string, state: HostState, error?: string }>
}

export interface PrefetchInit {
  images: string[]
  hosts: PrefetchHost[]
  /** Supernode API base URLs asked to preheat first (each with `token`). */
  supernodes?: string[]
  /** The supernodes' preheat bearer token. */
  token?: string
  platforms?: string[]
  /** @default {@link DEFAULT_CONCURRENCY} */
  concurrency?: number
  /** The whole run, preheat included. @default {@link DEFAULT_TIMEOUT} */
  timeout?: number
  /** @default {@link DEFAULT_POLL_INTERVAL} */
  pollInterval?: number
  /** @default {@link DEFAULT_REQUEST_TIMEOUT} */
  requestTimeout?: number
}

export interface PrefetchComponents {
  /** Called on every change of a target's status (state or bytes). */
  onUpdate?: (status: TargetStatus) => void
}

export interface PrefetchResult {
  images: string[]
  preheat: TargetStatus[]
  hosts: TargetStatus[]
  /** every preheat and every host succeeded */
  ok: boolean
}

/**
 * Asks each supernode to preheat every image and waits for that, then asks the hosts'
 * daemons to prefetch them, at most `concurrency` hosts at once, following each job
 * until it ends or the timeout. A failed preheat is reported but does not stop the
 * hosts: they still fetch through the swarm.
 */
export async function prefetch (components: PrefetchComponents, init: PrefetchInit, options: { signal?: AbortSignal } = {}): Promise<PrefetchResult> {
  const timeout = init.timeout ?? DEFAULT_TIMEOUT
  const deadline = AbortSignal.timeout(timeout)
  const signal = AbortSignal.any([deadline, ...(options.signal != null ? [options.signal] : [])])
  const run: RunContext = {
    images: init.images,
    platforms: init.platforms,
    signal,
    deadline,
    timeout,
    pollInterval: init.pollInterval ?? DEFAULT_POLL_INTERVAL,
    requestTimeout: init.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT,
    onUpdate: components.onUpdate ?? (() => {})
  }

  const preheat = (init.supernodes ?? []).map(url => newStatus('supernode', url, url, init.images))
  await Promise.all(preheat.map(async status => { await follow(run, status, { url: status.url, kind: 'preheat', ...(init.token != null ? { token: init.token } : {}) }) }))

  const hosts = init.hosts.map(h => newStatus('daemon', h.name, h.url, init.images))
  const execs = new Map(init.hosts.map((h, i) => [hosts[i], h.exec]))
  const queue = [...hosts]
  const concurrency = Math.max(1, Math.min(init.concurrency ?? DEFAULT_CONCURRENCY, hosts.length))
  await Promise.all(Array.from({ length: concurrency }, async () => {
    // bounded: each worker takes hosts off a finite queue
    for (let status = queue.shift(); status != null; status = queue.shift()) {
      const exec = execs.get(status)
      await follow(run, status, { url: status.url, kind: 'prefetch', ...(exec != null ? { exec } : {}) })
    }
  }))
  options.signal?.throwIfAborted()
  return { images: init.images, preheat, hosts, ok: [...preheat, ...hosts].every(s => s.state === 'succeeded') }
}

interface RunContext {
  images: string[]
  platforms: string[] | undefined
  signal: AbortSignal
  /** aborts at the timeout only (signal also aborts on an interrupt) */
  deadline: AbortSignal
  timeout: number
  pollInterval: number
  requestTimeout: number
  onUpdate: (status: TargetStatus) => void
}

function newStatus (kind: TargetStatus['kind'], name: string, url: string, images: string[]): TargetStatus {
  return {
    kind, name, url, state: 'pending', totalBytes: null, completedBytes: 0,
    bytesBySource: { local: 0, peer: 0, supernode: 0, origin: 0 }, durationMs: 0,
    jobs: images.map(image => ({ image, state: 'pending' }))
  }
}

/** Starts one job per image on one target and polls them until all end; never throws. */
async function follow (run: RunContext, status: TargetStatus, api: JobApi): Promise<void> {
  const started = performance.now()
  const latest = new Map<string, Job>()
  /** failed status requests in a row, per image */
  const pollErrors = new Map<string, number>()
  const requestOptions = { signal: run.signal, timeout: run.requestTimeout }
  const update = (): void => {
    status.durationMs = Math.round(performance.now() - started)
    const jobs = [...latest.values()]
    status.completedBytes = sum(jobs.map(j => j.completedBytes))
    status.totalBytes = jobs.length === status.jobs.length && jobs.every(j => j.totalBytes != null) ? sum(jobs.map(j => j.totalBytes ?? 0)) : null
    for (const source of ['local', 'peer', 'supernode', 'origin'] as const) {
      status.bytesBySource[source] = sum(jobs.map(j => j.bytesBySource[source]))
    }
    const states = status.jobs.map(j => j.state)
    status.state = states.includes('pending') || states.includes('running') ? 'running' : states.includes('failed') ? 'failed' : 'succeeded'
    const failed = status.jobs.filter(j => j.error != null)
    if (failed.length > 0) {
      status.error = failed.map(j => `${j.image}: ${j.error}`).join('; ')
    }
    run.onUpdate(status)
  }

  status.state = 'running'
  run.onUpdate(status)
  try {
    for (const job of status.jobs) {
      job.id = await startJob(api, { image: job.image, ...(run.platforms != null ? { platforms: run.platforms } : {}) }, requestOptions)
      job.state = 'running'
    }
    update()
    // bounded by the deadline: run.signal aborts every request and pause at it
    while (status.jobs.some(j => j.state === 'running')) {
      await pause(run.pollInterval, run.signal)
      for (const job of status.jobs.filter(j => j.state === 'running' && j.id != null)) {
        let answer
        try {
          answer = await getJob(api, job.id ?? '', requestOptions)
        } catch (err) {
          const errors = (pollErrors.get(job.image) ?? 0) + 1
          pollErrors.set(job.image, errors)
          if (run.signal.aborted || errors >= MAX_POLL_ERRORS) {
            throw err
          }
          continue
        }
        pollErrors.delete(job.image)
        latest.set(job.image, answer)
        job.state = answer.state
        if (answer.state === 'failed') {
          job.error = answer.error ?? 'failed (no reason given)'
        }
      }
      update()
    }
  } catch (err) {
    const reason = run.deadline.aborted
      ? new PrefetchTimeoutError(`timed out after ${formatDuration(run.timeout)}`).message
      : run.signal.aborted ? 'interrupted' : (err as Error).message
    for (const job of status.jobs.filter(j => j.state === 'pending' || j.state === 'running')) {
      job.state = 'failed'
      job.error = reason
    }
    update()
  }
}

async function pause (ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => { clearTimeout(timer); reject(signal.reason) }
    const timer = setTimeout(() => { signal.removeEventListener('abort', onAbort); resolve() }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0)

export function formatDuration (ms: number): string {
  if (ms < 1000) {
    return `${ms}ms`
  }
  if (ms < 60_000) {
    return `${(ms / 1000).toFixed(1)}s`
  }
  const s = Math.round(ms / 1000)
  return s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor(s % 3600 / 60)).padStart(2, '0')}m`
}
