import { API_PREFIX, DigestMismatchError, HttpError, isDigest, readJson, sendJson, type Route } from '@shoal/core'
import { z } from 'zod'
import { MISMATCH_MEMORY_MS } from '../constants.ts'
import { authorize } from '../mirror/registry-mirror.ts'
import { sendDownload, type SendDownloadComponents } from '../mirror/send-download.ts'
import type { BlobAuthorizer } from '../mirror/blob-authorizer.ts'

export interface DaemonApiComponents extends SendDownloadComponents {
  /** Asked, with the caller's headers, before anything is served. */
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
 * `/metrics`, `/api/v1/status`): downloads of any URL through the swarm, keyed by URL,
 * served only after a HEAD of the URL with the caller's headers answered 2xx.
 */
export function daemonApiRoutes (c: DaemonApiComponents): Route[] {
  const mismatches = new RecentSet(MISMATCH_MEMORY_MS, 1024)
  return [
    {
      // a download in progress, by where its bytes came from: what dfget's progress bar shows
      methods: ['GET'],
      pattern: new RegExp(`^${API_PREFIX}/downloads/(?<taskId>[a-f0-9]{64})$`),
      handler: async (ctx) => {
        const download = c.downloads.inProgress(ctx.params.taskId ?? '')
        if (download == null) {
          throw new HttpError(404, 'NOT_FOUND', 'no download of that task is in progress here')
        }
        sendJson(ctx.res, 200, {
          taskId: download.taskId,
          state: download.state,
          via: download.via,
          contentLength: download.contentLength,
          completedBytes: download.contiguous,
          bytesBySource: download.bytesBySource
        })
      }
    },
    {
      methods: ['POST'],
      pattern: new RegExp(`^${API_PREFIX}/downloads$`),
      handler: async (ctx) => {
        const body = await readJson(ctx.req, downloadRequestSchema)
        // asked every time (cached briefly): content this host holds or fetches for
        // someone else, or that peers serve, is not the caller's unless the source says
        // so with the caller's own headers, and a 2xx is the only yes from a URL that is
        // not a registry's blob endpoint
        if (!await authorize(ctx, c.authorizer, body.url, body.headers ?? {}, { redirectMeansYes: false })) {
          return
        }
        const key = `${body.url} ${body.digest ?? ''}`
        if (body.digest != null && mismatches.has(key)) {
          throw new HttpError(502, 'DIGEST_INVALID', `${body.url} did not match ${body.digest} in the last ${MISMATCH_MEMORY_MS / 1000} s`)
        }
        // by URL, not by digest: that the caller may read this URL says nothing about
        // other content that has the digest it names; the digest is checked all the same
        try {
          await sendDownload(ctx, c, { ...body, shareByDigest: false }, body.digest != null ? { 'x-shoal-digest': body.digest } : {})
        } catch (err) {
          if (err instanceof DigestMismatchError) {
            // the connection is cut (the body is never wrong, only short): dfget asks
            // again to learn why, and is told here
            mismatches.add(key)
          }
          throw err
        }
      }
    }
  ]
}


/** Keys remembered for a while; the oldest go first when full. */
class RecentSet {
  private readonly entries = new Map<string, number>()
  private readonly ttl: number
  private readonly max: number

  constructor (ttl: number, max: number) {
    this.ttl = ttl
    this.max = max
  }

  add (key: string): void {
    this.entries.delete(key)
    this.entries.set(key, Date.now() + this.ttl)
    // bounded: one over at most
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.max) {
        break
      }
      this.entries.delete(oldest)
    }
  }

  has (key: string): boolean {
    const until = this.entries.get(key)
    if (until == null) {
      return false
    }
    if (until < Date.now()) {
      this.entries.delete(key)
      return false
    }
    return true
  }
}
