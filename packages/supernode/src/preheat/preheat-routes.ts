import { setTimeout as delay } from 'node:timers/promises'
import { timingSafeEqual, createHash } from 'node:crypto'
import {
  BlobAuthorization, formatIssues, HttpError, imageDefaults, isDockerHub, parseImageReference, pullJobRequestSchema, pullJobRoutes, checkJobSource, ShoalError, SourceRefusedError, TaskFailedError, taskIdFor, TooManyJobsError,
  type PullByteSource, type PullJobView, type PullJobLayer, type PullJobs, type PullJobSpec, type RegistryClient, type Route, type RouteContext, type SourceClient
} from '@shoal/core'
import { PROGRESS_POLL_MS } from '../constants.ts'
import type { TaskManager } from '../tasks/task-manager.ts'

export interface PreheatComponents {
  jobs: Pick<PullJobs, 'create' | 'get' | 'list'>
  tasks: Pick<TaskManager, 'register' | 'find'>
  /** Says whether a URL may be fetched at all (`--allow-source`). */
  source: Pick<SourceClient, 'check'>
  registryClient: Pick<RegistryClient, 'resolve' | 'authorization'>
}

export interface PreheatInit {
  /** The operator's token (`--preheat-token-file`); undefined turns the HTTP API off (403). */
  token?: string
}


/**
 * `POST /api/v1/preheat`: the supernode fetches an image's layers (or URLs) into its
 * cache through its task machinery, as if a daemon had asked for each, so the first
 * pulls of a release find them there. Only the operator's bearer token may create or
 * read jobs over HTTP.
 */
export function preheatRoutes (c: PreheatComponents, init: PreheatInit): Route[] {
  const expected = init.token != null ? createHash('sha256').update(init.token).digest() : undefined
  const authorize = (ctx: RouteContext): void => {
    if (expected == null) {
      throw new HttpError(403, 'DENIED', 'preheat over HTTP is off: start the supernode with --preheat-token-file <file>')
    }
    const header = ctx.req.headers.authorization ?? ''
    const match = /^Bearer ([^\s]+)$/i.exec(header)
    // hashed first, so the comparison takes the same time whatever the length
    if (match?.[1] == null || !timingSafeEqual(createHash('sha256').update(match[1]).digest(), expected)) {
      throw new HttpError(401, 'UNAUTHORIZED', header === '' ? 'preheat needs Authorization: Bearer <token> (the token in the supernode\'s --preheat-token-file)' : 'the bearer token is not the preheat token', {
        headers: { 'www-authenticate': 'Bearer realm="shoal-preheat"' }
      })
    }
  }
  return pullJobRoutes({
    name: 'preheat',
    jobs: c.jobs,
    authorize,
    credentials: true,
    spec: (body) => preheatSpec(c, body)
  })
}

/** A preheat job for a validated request. @throws {HttpError} for a registry or URL that is not an allowed source */
export function preheatSpec (c: Omit<PreheatComponents, 'jobs'>, body: { image?: string | undefined, urls?: string[] | undefined, platforms?: string[] | undefined, credentials?: { username: string, password: string } | undefined }): PullJobSpec {
  const basic: Record<string, string> = body.credentials != null ? { authorization: `Basic ${Buffer.from(`${body.credentials.username}:${body.credentials.password}`).toString('base64')}` } : {}
  if (body.urls != null) {
    for (const url of body.urls) {
      checkJobSource(c.source, url)
    }
    const urls = body.urls
    return {
      resolve: async () => ({ layers: urls.map(url => ({ url, size: null })) }),
      fetch: async (layer, bySource, signal) => { await fetchLayer(c, layer, basic, bySource, signal) }
    }
  }
  const image = body.image ?? ''
  const ref = parseImageReference(image)
  const base = registryBase(c, ref.registry)
  const credentials = body.credentials != null ? { credentials: body.credentials } : {}
  let auth: BlobAuthorization | undefined
  return {
    image,
    resolve: async (signal) => {
      const resolved = await c.registryClient.resolve(base, ref, { ...(body.platforms != null ? { platforms: body.platforms } : {}), ...credentials, signal })
      auth = new BlobAuthorization(resolved.authorization, async (s) => c.registryClient.authorization(base, ref, { ...credentials, signal: s }))
      return { layers: resolved.blobs.map(b => ({ digest: b.digest, url: b.url, size: b.size })) }
    },
    fetch: async (layer, bySource, signal) => { await fetchLayer(c, layer, await auth?.headers(signal) ?? {}, bySource, signal) }
  }
}

/**
 * The registry's base URL: `https://<host>` when the allowlist lets it be fetched that
 * way, else `http://<host>` (a registry allowed as `http://host:port`); Docker Hub
 * names are registry-1.docker.io.
 */
function registryBase (c: Pick<PreheatComponents, 'source'>, host: string): string {
  const name = isDockerHub(host) ? imageDefaults.DOCKER_HUB_REGISTRY : host
  let refused: unknown
  for (const scheme of ['https', 'http']) {
    try {
      c.source.check(`${scheme}://${name}/v2/`)
      return `${scheme}://${name}`
    } catch (err) {
      refused ??= err
    }
  }
  if (refused instanceof SourceRefusedError) {
    throw new HttpError(403, 'DENIED', `registry ${host}: ${refused.message}`)
  }
  throw refused
}

/** One layer into the supernode's cache: registered as a task (one source fetch, however many ask), then followed to its end. */
async function fetchLayer (c: Pick<PreheatComponents, 'tasks'>, layer: PullJobLayer, headers: Record<string, string>, bySource: Record<PullByteSource, number>, signal: AbortSignal): Promise<void> {
  const subject = { url: layer.url, ...(layer.digest != null ? { digest: layer.digest } : {}) }
  const cached = c.tasks.find(taskIdFor(subject))?.state === 'success'
  const task = await c.tasks.register({ ...subject, ...(Object.keys(headers).length > 0 ? { headers } : {}) }, { signal })
  const bytes = (): number => {
    let n = 0
    for (const piece of task.pieces.values()) {
      n += piece.length
    }
    return n
  }
  // bounded by the job's signal (its timeout)
  while (task.state === 'running') {
    layer.completedBytes = bytes()
    if (task.contentLength != null) {
      layer.size = task.contentLength
    }
    // polled: the task tells the scheduler of its changes, nobody else
    await delay(PROGRESS_POLL_MS, undefined, { signal }).catch(() => {})
    signal.throwIfAborted()
  }
  if (task.state === 'failed') {
    const status = task.error?.sourceStatus != null ? ` (source answered ${task.error.sourceStatus})` : ''
    throw new TaskFailedError(`${task.error?.message ?? 'the source fetch failed'}${status}`, { sourceStatus: task.error?.sourceStatus, reason: task.error?.code })
  }
  layer.completedBytes = task.contentLength ?? bytes()
  bySource[cached ? 'local' : 'origin'] += layer.completedBytes
}

/** Preheat over the control protocol: what a cluster member may ask without the operator's token. */
export interface PreheatControl {
  /** @throws {HttpError} 400, 403, 429 as over HTTP */
  create(body: unknown): { id: string, state: string }
  /** @throws {HttpError} 400 without an id, 404 for no such job */
  get(body: unknown): PullJobView
}

export function preheatControl (c: PreheatComponents): PreheatControl {
  return {
    create (body) {
      const parsed = pullJobRequestSchema.safeParse(body)
      if (!parsed.success) {
        throw new HttpError(400, 'BAD_REQUEST', `invalid request: ${formatIssues(parsed.error)}`)
      }
      let spec: PullJobSpec
      try {
        spec = preheatSpec(c, parsed.data)
      } catch (err) {
        if (err instanceof ShoalError && !(err instanceof HttpError)) {
          throw new HttpError(400, 'BAD_REQUEST', err.message)
        }
        throw err
      }
      try {
        const view = c.jobs.create(spec)
        return { id: view.id, state: view.state }
      } catch (err) {
        if (err instanceof TooManyJobsError) {
          throw new HttpError(429, 'TOOMANYREQUESTS', err.message)
        }
        throw err
      }
    },
    get (body) {
      const id = (body as { id?: unknown } | null)?.id
      if (typeof id !== 'string' || id.length > 100) {
        throw new HttpError(400, 'BAD_REQUEST', 'preheat-status needs { id }')
      }
      const view = c.jobs.get(id)
      if (view == null) {
        throw new HttpError(404, 'NOT_FOUND', `no preheat job ${JSON.stringify(id)} (finished jobs are kept for an hour)`)
      }
      return view
    }
  }
}
