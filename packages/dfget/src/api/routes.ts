import { API_PREFIX, isDigest, readJson, sendJson, serveMetrics, type PeerInfo, type Route } from '@shoal/core'
import { z } from 'zod'
import { sendDownload, type SendDownloadComponents } from '../mirror/send-download.ts'
import type { Registry } from 'prom-client'

export interface DaemonApiComponents extends SendDownloadComponents {
  registry: Registry
  self: () => PeerInfo
  version: string
}

/** `POST /api/v1/downloads`: what `dfget <url> -o <file>` asks the daemon for. */
export const downloadRequestSchema = z.object({
  url: z.string().url().refine(u => /^https?:/.test(u), 'must be an http(s) URL').max(8192),
  digest: z.string().refine(isDigest, 'must be an OCI digest such as sha256:<64 hex digits>').optional(),
  headers: z.record(z.string().max(256), z.string().max(16384)).optional()
})

/**
 * The daemon's own API, beside the registry mirror: health, metrics, status, and
 * downloads of any URL through the swarm.
 */
export function daemonApiRoutes (c: DaemonApiComponents): Route[] {
  return [
    {
      methods: ['GET', 'HEAD'],
      pattern: /^\/healthz$/,
      handler: async ({ res }) => { sendJson(res, 200, { status: 'ok' }) }
    },
    {
      methods: ['GET'],
      pattern: /^\/metrics$/,
      handler: async ({ req, res }) => { await serveMetrics(c.registry, req, res) }
    },
    {
      methods: ['GET'],
      pattern: new RegExp(`^${API_PREFIX}/status$`),
      handler: async ({ res }) => { sendJson(res, 200, { version: c.version, ...c.self() }) }
    },
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
