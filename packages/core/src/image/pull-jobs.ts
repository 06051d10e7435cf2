import { randomUUID } from 'node:crypto'
import { ShoalError } from '../errors.ts'
import { DEFAULT_JOB_CONCURRENCY, DEFAULT_JOB_MAX_AGE, DEFAULT_JOB_TIMEOUT, DEFAULT_MAX_JOBS } from './constants.ts'
import type { Logger } from '../logger.ts'

/** No room for another job: every kept job is still running. */
export class TooManyJobsError extends ShoalError {
  override name = 'TooManyJobsError'
  override readonly code = 'ERR_TOO_MANY_JOBS'
}

export type PullJobState = 'running' | 'succeeded' | 'failed'
export type PullLayerState = 'pending' | 'running' | 'succeeded' | 'failed'
/** Where a job's bytes came from: already on this host, another daemon, the supernode, the registry. */
export type PullByteSource = 'local' | 'peer' | 'supernode' | 'origin'

export interface PullJobLayer {
  digest?: string
  url: string
  size: number | null
  completedBytes: number
  state: PullLayerState
  error?: string
}

/** A prefetch (daemon) or preheat (supernode) job as the API shows it. */
export interface PullJobView {
  id: string
  image?: string
  state: PullJobState
  error?: string
  startedAt: string
  finishedAt?: string
  totalBytes: number | null
  completedBytes: number
  bytesBySource: Record<PullByteSource, number>
  layers: PullJobLayer[]
}

/** What a job fetches, once resolved. */
export interface PullJobPlan {
  layers: Array<{ digest?: string, url: string, size: number | null }>
}

export interface PullJobSpec {
  image?: string
  /** Finds the layers (an image's manifest, or the URLs as given). */
  resolve: (signal: AbortSignal) => Promise<PullJobPlan>
  /**
   * Fetches one layer into the store, keeping `layer.completedBytes` up to date, and
   * adds the bytes it got to `bytesBySource` as they come (or at the end).
   */
  fetch: (layer: PullJobLayer, bytesBySource: Record<PullByteSource, number>, signal: AbortSignal) => Promise<void>
}

export interface PullJobsInit {
  /** Jobs kept, running and finished; the oldest finished ones make room. @default 100 */
  maxJobs?: number
  /** Finished jobs are forgotten this long after they ended. @default 3600000 ms (1 h) */
  maxAge?: number
  /** Layers of one job fetched at once. @default 3 */
  concurrency?: number
  /** Longest one job may run. @default 3600000 ms (1 h) */
  timeout?: number
}

export interface PullJobsComponents {
  log: Logger
  /** Told of every job that ended (for a metric of jobs by result). */
  onFinished?: (job: PullJobView) => void
}

interface Job {
  view: PullJobView
  finishedAt?: number
}

/**
 * The prefetch and preheat jobs of one process: each resolves its layers, then fetches
 * them a few at a time, failing with the first layer's reason once all have ended.
 * Jobs are bounded in number and forgotten by age once finished.
 */
export class PullJobs {
  private readonly jobs = new Map<string, Job>()
  private readonly running = new Set<Promise<void>>()
  private readonly controller = new AbortController()
  private readonly log: Logger
  private readonly onFinished?: (job: PullJobView) => void
  private readonly maxJobs: number
  private readonly maxAge: number
  private readonly concurrency: number
  private readonly timeout: number

  constructor (components: PullJobsComponents, init: PullJobsInit = {}) {
    this.log = components.log
    if (components.onFinished != null) {
      this.onFinished = components.onFinished
    }
    this.maxJobs = init.maxJobs ?? DEFAULT_MAX_JOBS
    this.maxAge = init.maxAge ?? DEFAULT_JOB_MAX_AGE
    this.concurrency = init.concurrency ?? DEFAULT_JOB_CONCURRENCY
    this.timeout = init.timeout ?? DEFAULT_JOB_TIMEOUT
  }

  /** @throws {TooManyJobsError} when every kept job is still running */
  create (spec: PullJobSpec): PullJobView {
    this.evict(true)
    if (this.jobs.size >= this.maxJobs) {
      throw new TooManyJobsError(`${this.jobs.size} jobs are running (at most ${this.maxJobs}); try again once some finished`)
    }
    const view: PullJobView = {
      id: randomUUID(),
      ...(spec.image != null ? { image: spec.image } : {}),
      state: 'running',
      startedAt: new Date().toISOString(),
      totalBytes: null,
      completedBytes: 0,
      bytesBySource: { local: 0, peer: 0, supernode: 0, origin: 0 },
      layers: []
    }
    const job: Job = { view }
    this.jobs.set(view.id, job)
    const run = this.run(job, spec).finally(() => { this.running.delete(run) })
    this.running.add(run)
    return this.snapshot(job)
  }

  get (id: string): PullJobView | undefined {
    this.evict()
    const job = this.jobs.get(id)
    return job == null ? undefined : this.snapshot(job)
  }

  list (): PullJobView[] {
    this.evict()
    return [...this.jobs.values()].map(job => this.snapshot(job))
  }

  async stop (): Promise<void> {
    this.controller.abort(new Error('stopping'))
    await Promise.allSettled([...this.running])
  }

  private async run (job: Job, spec: PullJobSpec): Promise<void> {
    const { view } = job
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.timeout)])
    try {
      const plan = await spec.resolve(signal)
      view.layers = plan.layers.map(l => ({ ...(l.digest != null ? { digest: l.digest } : {}), url: l.url, size: l.size, completedBytes: 0, state: 'pending' }))
      const queue = [...view.layers]
      const worker = async (): Promise<void> => {
        // bounded by the plan's length
        for (let layer = queue.shift(); layer != null; layer = queue.shift()) {
          layer.state = 'running'
          try {
            await spec.fetch(layer, view.bytesBySource, signal)
            layer.state = 'succeeded'
            layer.size ??= layer.completedBytes
            layer.completedBytes = layer.size
          } catch (err) {
            layer.state = 'failed'
            layer.error = signal.aborted ? `aborted: ${String((signal.reason as Error)?.message ?? signal.reason)}` : (err as Error).message
            this.log.warn({ err, job: view.id, url: layer.url }, 'layer of a job failed')
          }
        }
      }
      await Promise.all(Array.from({ length: Math.min(this.concurrency, Math.max(1, queue.length)) }, worker))
      const failed = view.layers.filter(l => l.state === 'failed')
      if (failed.length > 0) {
        view.state = 'failed'
        view.error = `${failed.length} of ${view.layers.length} layers failed; first: ${failed[0]?.digest ?? failed[0]?.url}: ${failed[0]?.error}`
      } else {
        view.state = 'succeeded'
      }
    } catch (err) {
      view.state = 'failed'
      view.error = signal.aborted ? `aborted: ${String((signal.reason as Error)?.message ?? signal.reason)}` : (err as Error).message
      this.log.warn({ err, job: view.id }, 'job failed')
    }
    job.finishedAt = Date.now()
    view.finishedAt = new Date(job.finishedAt).toISOString()
    this.log.info({ job: view.id, image: view.image, state: view.state, error: view.error }, 'job finished')
    this.onFinished?.(this.snapshot(job))
  }

  private snapshot (job: Job): PullJobView {
    const layers = job.view.layers.map(l => ({ ...l }))
    const sizes = layers.map(l => l.size)
    return {
      ...job.view,
      bytesBySource: { ...job.view.bytesBySource },
      totalBytes: layers.length > 0 && sizes.every(s => s != null) ? sizes.reduce<number>((a, b) => a + (b ?? 0), 0) : null,
      completedBytes: layers.reduce((n, l) => n + l.completedBytes, 0),
      layers
    }
  }

  /**
   * Forgets finished jobs past their age; when making room for a new one, also the
   * oldest finished ones while at the bound (a job someone is polling is only dropped
   * for a new one).
   */
  private evict (makeRoom = false): void {
    const now = Date.now()
    const finished = [...this.jobs.values()].filter(j => j.finishedAt != null).sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0))
    for (const job of finished) {
      if (now - (job.finishedAt ?? now) > this.maxAge || (makeRoom && this.jobs.size >= this.maxJobs)) {
        this.jobs.delete(job.view.id)
      }
    }
  }
}
