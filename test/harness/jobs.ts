import { request } from 'undici'

/** A prefetch or preheat job as `GET /api/v1/<kind>/<id>` shows it (contract 4). */
export interface JobView {
  id: string
  image?: string
  state: 'running' | 'succeeded' | 'failed'
  error?: string
  startedAt: string
  finishedAt?: string
  totalBytes: number | null
  completedBytes: number
  bytesBySource: { local: number, peer: number, supernode: number, origin: number }
  layers: Array<{ digest?: string, url: string, size: number | null, completedBytes: number, state: string, error?: string }>
}

/** What a POST answers: `{ id, state }`, or `{ errors: [...] }`. */
export interface PostAnswer { id: string, state: string, errors: Array<{ code: string, message: string }> }

/** POSTs a job; resolves with the status and the JSON answer. */
export async function postJob (url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, json: PostAnswer }> {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) })
  return { status: res.statusCode, json: await res.body.json() as PostAnswer }
}

/** Polls a job until it is no longer running (or `timeoutMs` passes: an error). */
export async function waitForJob (url: string, headers: Record<string, string> = {}, timeoutMs = 120_000): Promise<JobView> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const res = await request(url, { headers, signal: AbortSignal.timeout(10_000) })
    const job = await res.body.json() as JobView
    if (res.statusCode !== 200) {
      throw new Error(`${url} answered ${res.statusCode}: ${JSON.stringify(job)}`)
    }
    if (job.state !== 'running') {
      return job
    }
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  throw new Error(`job ${url} still running after ${timeoutMs} ms`)
}
