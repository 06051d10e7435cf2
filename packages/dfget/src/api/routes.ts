import { API_PREFIX, isDigest, readJson, type Route } from '@shoal/core'
import { z } from 'zod'
import { sendDownload, type SendDownloadComponents } from '../mirror/send-download.ts'

/** `POST /api/v1/downloads`: what `dfget <url> -o <file>` asks the daemon for. */
export const downloadRequestSchema = z.object({
  url: z.string().url().refine(u => /^https?:/.test(u), 'must be an http(s) URL').max(8192),
  digest: z.string().refine(isDigest, 'must be an OCI digest such as sha256:<64 hex digits>').optional(),
  headers: z.record(z.string().max(256), z.string().max(16384)).optional()
})

/**
 * The daemon's own API beside the registry mirror (and the common `/healthz`,
 * `/metrics`, `/api/v1/status`): downloads of any URL through the swarm.
 */
export function daemonApiRoutes (c: SendDownloadComponents): Route[] {
  return [
    {
      methods: ['POST'],
      pattern: new RegExp(`^${API_PREFIX}/downloads$`),
      handler: async (ctx) => {
        const body = await readJson(ctx.req, downloadRequestSchema)
        await sendDownload(ctx, c, body, body.digest != null ? { 'x-shoal-digest': body.digest } : {})
      }
    }
  ]
}
