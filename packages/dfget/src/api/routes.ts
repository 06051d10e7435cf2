import { API_PREFIX, isDigest, readJson, type Route } from '@shoal/core'
import { z } from 'zod'
import { authorize } from '../mirror/registry-mirror.ts'
import { sendDownload, type SendDownloadComponents } from '../mirror/send-download.ts'
import type { DownloadManager } from '../download/download-manager.ts'
import type { BlobAuthorizer } from '../mirror/blob-authorizer.ts'

export interface DaemonApiComponents extends SendDownloadComponents {
  downloads: SendDownloadComponents['downloads'] & Pick<DownloadManager, 'isLocal' | 'swarm'>
  /** Asked before content this host already has, or is fetching, is served. */
  authorizer: Pick<BlobAuthorizer, 'check'>
}

/** `POST /api/v1/downloads`: what `dfget <url> -o <file>` asks the daemon for. */
export const downloadRequestSchema = z.object({
  url: z.string().url().refine(u => /^https?:/.test(u), 'must be an http(s) URL').max(8192),
  digest: z.string().refine(isDigest, 'must be an OCI digest such as sha256:<64 hex digits>').optional(),
  headers: z.record(z.string().max(256), z.string().max(16384)).optional()
})

/**
 * The daemon's own API beside the registry mirror (and the common `/healthz`,
 * `/metrics`, `/api/v1/status`): downloads of any URL through the swarm. Content
 * already on this host, on its way, or coming from peers is served only after a HEAD of
 * the URL with the caller's headers answered 2xx or 3xx.
 */
export function daemonApiRoutes (c: DaemonApiComponents): Route[] {
  return [
    {
      methods: ['POST'],
      pattern: new RegExp(`^${API_PREFIX}/downloads$`),
      handler: async (ctx) => {
        const body = await readJson(ctx.req, downloadRequestSchema)
        // content this host holds or is fetching for someone else, or that peers would
        // serve, is not the caller's unless the source says so; only a download straight
        // from the source (no supernode, nothing here) needs no question: the source
        // answers it itself
        const served = c.downloads.swarm || await c.downloads.isLocal(body)
        if (served && !await authorize(ctx, c.authorizer, body.url, body.headers ?? {})) {
          return
        }
        await sendDownload(ctx, c, body, body.digest != null ? { 'x-shoal-digest': body.digest } : {})
      }
    }
  ]
}
