import { request } from 'undici'
import { sh, type Executor } from '../exec/index.ts'
import { DEFAULT_REQUEST_TIMEOUT, MAX_RESPONSE_BYTES } from './constants.ts'
import { PrefetchRequestError } from './errors.ts'

/** Where downloaded bytes came from, as a daemon's prefetch job reports them. */
export interface BytesBySource {
  local: number
  peer: number
  supernode: number
  origin: number
}

export type JobState = 'running' | 'succeeded' | 'failed'

/** A prefetch (daemon) or preheat (supernode) job, as the API answers it (shared contract 4). */
export interface Job {
  id: string
  image?: string
  state: JobState
  error?: string
  startedAt: string
  finishedAt?: string
  totalBytes: number | null
  completedBytes: number
  bytesBySource: BytesBySource
  layers: Array<{ digest?: string, url: string, size: number | null, completedBytes: number, state: string, error?: string }>
}

export interface JobRequest {
  image: string
  platforms?: string[]
}

/** One daemon's `/api/v1/prefetch` or one supernode's `/api/v1/preheat`. */
export interface JobApi {
  /** Base URL, such as http://host:65001 */
  url: string
  /** `prefetch` on a daemon, `preheat` on a supernode */
  kind: 'prefetch' | 'preheat'
  /** Sent as `Authorization: Bearer <token>` (the supernode's preheat token). */
  token?: string
  /** Ask from the host (curl over this executor to `url` there) instead of from here; never with a token. */
  exec?: Executor
}

export interface RequestOptions {
  signal?: AbortSignal
  /** @default {@link DEFAULT_REQUEST_TIMEOUT} */
  timeout?: number
}

/** Starts a job; resolves with its id. */
export async function startJob (api: JobApi, body: JobRequest, options: RequestOptions = {}): Promise<string> {
  const answer = await call(api, 'POST', `/api/v1/${api.kind}`, body, options)
  const id = (answer as { id?: unknown } | undefined)?.id
  if (typeof id !== 'string' || id === '') {
    throw new PrefetchRequestError(`${api.url} answered POST /api/v1/${api.kind} without a job id`)
  }
  return id
}

/** A job's current state. */
export async function getJob (api: JobApi, id: string, options: RequestOptions = {}): Promise<Job> {
  const job = await call(api, 'GET', `/api/v1/${api.kind}/${encodeURIComponent(id)}`, undefined, options) as Partial<Job> | undefined
  if (job == null || !['running', 'succeeded', 'failed'].includes(job.state ?? '') || typeof job.completedBytes !== 'number') {
    throw new PrefetchRequestError(`${api.url} answered GET /api/v1/${api.kind}/${id} with something that is not a job`)
  }
  return {
    ...job as Job,
    totalBytes: typeof job.totalBytes === 'number' ? job.totalBytes : null,
    bytesBySource: { local: 0, peer: 0, supernode: 0, origin: 0, ...job.bytesBySource },
    layers: Array.isArray(job.layers) ? job.layers : []
  }
}

async function call (api: JobApi, method: 'GET' | 'POST', path: string, body: unknown, options: RequestOptions): Promise<unknown> {
  const signal = AbortSignal.any([AbortSignal.timeout(options.timeout ?? DEFAULT_REQUEST_TIMEOUT), ...(options.signal != null ? [options.signal] : [])])
  const headers: Record<string, string> = { accept: 'application/json' }
  if (body != null) {
    headers['content-type'] = 'application/json'
  }
  if (api.token != null) {
    headers.authorization = `Bearer ${api.token}`
  }
  let res: { statusCode: number, text: string }
  try {
    res = api.exec != null
      ? await onHost(api.exec, method, new URL(path, api.url).href, headers, body, options.timeout ?? DEFAULT_REQUEST_TIMEOUT, signal)
      : await direct(new URL(path, api.url), method, headers, body, signal)
  } catch (err) {
    if (options.signal?.aborted === true || err instanceof PrefetchRequestError) {
      throw err
    }
    throw new PrefetchRequestError(`${method} ${api.url}${path}: ${(err as Error).message}`, { cause: err })
  }
  const text = res.text
  let json: unknown
  try {
    json = text === '' ? undefined : JSON.parse(text)
  } catch {
    json = undefined
  }
  if (res.statusCode >= 400) {
    throw new PrefetchRequestError(`${method} ${api.url}${path} answered ${res.statusCode}${describeErrors(json, text)}`)
  }
  if (json === undefined) {
    throw new PrefetchRequestError(`${method} ${api.url}${path} answered ${res.statusCode} without JSON`)
  }
  return json
}

async function direct (url: URL, method: string, headers: Record<string, string>, body: unknown, signal: AbortSignal): Promise<{ statusCode: number, text: string }> {
  const res = await request(url, { method, headers, ...(body != null ? { body: JSON.stringify(body) } : {}), signal })
  return { statusCode: res.statusCode, text: await readLimited(res.body, signal) }
}

/**
 * The same request made on the host, by curl over its executor (SSH): the daemon's API
 * stays on its loopback listener. The body goes on stdin, the status comes last on stdout.
 */
async function onHost (exec: Executor, method: string, url: string, headers: Record<string, string>, body: unknown, timeout: number, signal: AbortSignal): Promise<{ statusCode: number, text: string }> {
  const args = [
    'curl', '-sS', '-m', String(Math.max(1, Math.ceil(timeout / 1000))), '-X', method,
    ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]),
    ...(body != null ? ['--data-binary', '@-'] : []),
    '-w', '\\n%{http_code}', url
  ]
  // curl reads the \n in -w itself
  const res = await exec.run(args.map(sh).join(' '), {
    ...(body != null ? { input: JSON.stringify(body) } : {}),
    timeout: timeout + 5_000,
    signal
  })
  if (res.code !== 0) {
    throw new PrefetchRequestError(`${method} ${url} on ${exec.host}: ${res.stderr.trim().slice(0, 300) || `curl exited ${res.code}`}`)
  }
  const cut = res.stdout.lastIndexOf('\n')
  const text = res.stdout.slice(0, Math.max(0, cut))
  if (Buffer.byteLength(text) > MAX_RESPONSE_BYTES) {
    throw new PrefetchRequestError(`response larger than ${MAX_RESPONSE_BYTES} bytes`)
  }
  return { statusCode: Number(res.stdout.slice(cut + 1)), text }
}

/** The `{ errors: [{ code, message }] }` body of a 4xx, or the start of whatever came. */
function describeErrors (json: unknown, text: string): string {
  const errors = (json as { errors?: Array<{ code?: string, message?: string }> } | undefined)?.errors
  if (Array.isArray(errors) && errors.length > 0) {
    return `: ${errors.map(e => [e.code, e.message].filter(Boolean).join(' ')).join('; ')}`
  }
  const start = text.trim().slice(0, 200)
  return start === '' ? '' : `: ${start}`
}

async function readLimited (body: AsyncIterable<Buffer>, signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > MAX_RESPONSE_BYTES) {
      throw new PrefetchRequestError(`response larger than ${MAX_RESPONSE_BYTES} bytes`)
    }
    chunks.push(chunk)
    signal.throwIfAborted()
  }
  return Buffer.concat(chunks).toString('utf8')
}
