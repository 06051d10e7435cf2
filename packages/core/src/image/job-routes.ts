import { z } from 'zod'
import { API_PREFIX } from '../protocol/api.ts'
import { HttpError } from '../http/http-error.ts'
import { readJson, sendJson, type Route, type RouteContext } from '../http/server.ts'
import { parsePlatform } from './registry-client.ts'
import { TooManyJobsError, type PullJobSpec, type PullJobs } from './pull-jobs.ts'
import { parseImageReference } from './reference.ts'
import { ShoalError, SourceRefusedError } from '../errors.ts'

/** Largest number of URLs one job may name. */
export const MAX_JOB_URLS = 1000

/**
 * Refuses a job's URL that no source may serve (403 DENIED) before the job is created,
 * so a preheat or prefetch of a URL outside the allowlist fails at once, not per layer.
 *
 * @throws {HttpError} 403 DENIED naming the source
 */
export function checkJobSource (source: { check: (url: string) => unknown }, url: string): void {
  try {
    source.check(url)
  } catch (err) {
    if (err instanceof SourceRefusedError) {
      throw new HttpError(403, 'DENIED', err.message)
    }
    throw err
  }
}

const httpUrl = z.string().max(8192).refine(u => { try { return /^https?:$/.test(new URL(u).protocol) } catch { return false } }, 'must be an http(s) URL')

/**
 * `POST /api/v1/prefetch` (daemon) and `POST /api/v1/preheat` (supernode): an image
 * reference or a list of URLs, exactly one of them.
 */
export const pullJobRequestSchema = z.object({
  image: z.string().min(1).max(1024).refine(s => { try { parseImageReference(s); return true } catch { return false } }, 'must be an image reference such as registry.example.com/team/app:1.2, app@sha256:<hex> or alpine').optional(),
  urls: z.array(httpUrl).min(1).max(MAX_JOB_URLS).optional(),
  platforms: z.array(z.string().max(100).refine(s => { try { parsePlatform(s); return true } catch { return false } }, 'must be os/arch or os/arch/variant, such as linux/amd64')).min(1).max(16).optional(),
  credentials: z.object({ username: z.string().min(1).max(256), password: z.string().max(4096) }).optional()
}).refine(b => (b.image == null) !== (b.urls == null), 'give exactly one of image and urls')
export type PullJobRequest = z.infer<typeof pullJobRequestSchema>

export interface PullJobRoutesInit {
  /** `prefetch` or `preheat`: the routes are `/api/v1/<name>` and `/api/v1/<name>/<id>`. */
  name: string
  jobs: Pick<PullJobs, 'create' | 'get' | 'list'>
  /** Turns a validated request into a job; throws {@link HttpError} for what it refuses. */
  spec: (body: PullJobRequest, ctx: RouteContext) => PullJobSpec | Promise<PullJobSpec>
  /** Called first on every request; throws {@link HttpError} (401, 403) to refuse it. */
  authorize?: (ctx: RouteContext) => void
  /** Whether the request may carry registry credentials. @default false: they are refused */
  credentials?: boolean
}

/** Every answer of these routes is JSON; errors are `{ errors: [{ code, message }] }`, as the registry API has them. */
async function answer (ctx: RouteContext, handle: () => Promise<void>): Promise<void> {
  try {
    await handle()
  } catch (err) {
    if (err instanceof HttpError) {
      sendJson(ctx.res, err.status, { errors: [{ code: err.code, message: err.message }] }, err.headers)
      return
    }
    throw err
  }
}

/** POST creates a job (202), GET lists them or shows one. */
export function pullJobRoutes (init: PullJobRoutesInit): Route[] {
  const base = `${API_PREFIX}/${init.name}`
  return [
    {
      methods: ['POST'],
      pattern: new RegExp(`^${base}$`),
      handler: async (ctx) => {
        await answer(ctx, async () => {
          init.authorize?.(ctx)
          const body = await readJson(ctx.req, pullJobRequestSchema, { limit: 256 * 1024 })
          if (body.credentials != null && init.credentials !== true) {
            throw new HttpError(400, 'BAD_REQUEST', `invalid request: credentials are not accepted by /${init.name}`)
          }
          let spec: PullJobSpec
          try {
            spec = await init.spec(body, ctx)
          } catch (err) {
            if (err instanceof ShoalError && !(err instanceof HttpError)) {
              throw new HttpError(400, 'BAD_REQUEST', err.message)
            }
            throw err
          }
          try {
            const view = init.jobs.create(spec)
            sendJson(ctx.res, 202, { id: view.id, state: view.state }, { location: `${base}/${view.id}` })
          } catch (err) {
            if (err instanceof TooManyJobsError) {
              throw new HttpError(429, 'TOOMANYREQUESTS', err.message)
            }
            throw err
          }
        })
      }
    },
    {
      methods: ['GET'],
      pattern: new RegExp(`^${base}$`),
      handler: async (ctx) => {
        await answer(ctx, async () => {
          init.authorize?.(ctx)
          sendJson(ctx.res, 200, { jobs: init.jobs.list() })
        })
      }
    },
    {
      methods: ['GET'],
      pattern: new RegExp(`^${base}/(?<id>[^/]+)$`),
      handler: async (ctx) => {
        await answer(ctx, async () => {
          init.authorize?.(ctx)
          const view = init.jobs.get(ctx.params.id ?? '')
          if (view == null) {
            throw new HttpError(404, 'NOT_FOUND', `no ${init.name} job ${JSON.stringify((ctx.params.id ?? '').slice(0, 100))} (finished jobs are kept for an hour)`)
          }
          sendJson(ctx.res, 200, view)
        })
      }
    }
  ]
}
