import {
  DigestMismatchError, HttpError, SourceRefusedError, SourceUnavailableError, StoreReadError, StoreWriteError, TaskFailedError,
  type PieceStore, type RouteContext, type SourceClient
} from '@shoal/core'
import { streamContent, type ContentFallback } from '../download/content-stream.ts'
import type { Download } from '../download/download.ts'
import type { DownloadManager, DownloadRequest } from '../download/download-manager.ts'
import type { DfgetMetrics } from '../metrics.ts'

export interface SendDownloadComponents {
  downloads: DownloadManager
  store: PieceStore
  metrics: DfgetMetrics
  /** Says whether this daemon may fetch a URL at all, before anything is asked of anyone. */
  source: Pick<SourceClient, 'check' | 'fetch'>
}

/**
 * The content from `offset` on, straight from the origin and not stored: for a reader
 * whose download failed because this host's disk is full. The digest is still checked
 * by the reader, across what it sent from disk and what comes from here.
 */
function uncachedOrigin (components: SendDownloadComponents, request: DownloadRequest): ContentFallback {
  return async (offset, { signal }) => {
    components.metrics.backToSource.inc({ reason: 'ERR_STORE_WRITE' })
    const headers: Record<string, string> = { ...request.headers, ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) }
    const res = await components.source.fetch(request.url, { method: 'GET', headers, signal })
    const start = res.statusCode === 206 ? /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''))?.[1] : '0'
    if ((res.statusCode !== 200 && res.statusCode !== 206) || Number(start) !== offset) {
      await res.dump()
      throw new SourceUnavailableError(`origin answered ${res.statusCode} (${String(res.headers['content-range'] ?? 'no range')}) for the rest of ${request.url} from ${offset}`)
    }
    return (async function * () {
      try {
        yield * res.body as AsyncIterable<Uint8Array>
      } finally {
        res.body.destroy()
      }
    })()
  }
}

/** Registry error codes for the statuses a source can answer with. */
const SOURCE_STATUS_CODES: Record<number, string> = {
  401: 'UNAUTHORIZED',
  403: 'DENIED',
  404: 'BLOB_UNKNOWN',
  429: 'TOOMANYREQUESTS'
}

/** Maps a failed download to what the client is told. */
export function downloadError (err: Error | undefined): HttpError {
  if (err instanceof SourceRefusedError) {
    return new HttpError(403, 'DENIED', err.message)
  }
  if (err instanceof StoreWriteError) {
    // this host's disk is full or failing: the client may try another mirror or the registry
    return new HttpError(507, 'UNAVAILABLE', `this host cannot store the content: ${err.message}`)
  }
  if (err instanceof DigestMismatchError || (err instanceof TaskFailedError && err.reason === 'ERR_DIGEST_MISMATCH')) {
    // the source's content is not what the digest names: a client (dfget) tells its user so
    return new HttpError(502, 'DIGEST_INVALID', `the content does not match its digest: ${err.message}`)
  }
  if (err instanceof TaskFailedError && err.sourceStatus != null && err.sourceStatus >= 400 && err.sourceStatus < 500) {
    return new HttpError(err.sourceStatus, SOURCE_STATUS_CODES[err.sourceStatus] ?? 'UNKNOWN', err.message)
  }
  return new HttpError(502, 'UNAVAILABLE', `cannot fetch the content: ${err?.message ?? 'unknown error'}`)
}

/**
 * The download of `request`, joined or started, once its URL is one this daemon may
 * fetch: a refused URL gets no supernode registration (which would make the supernode
 * fetch it), no origin request and no cached copy.
 *
 * @throws {HttpError} as {@link downloadError} says a refusal
 */
export async function openDownload (components: Pick<SendDownloadComponents, 'source' | 'downloads'>, request: DownloadRequest, signal: AbortSignal): Promise<Download> {
  try {
    components.source.check(request.url)
  } catch (err) {
    throw downloadError(err as Error)
  }
  return components.downloads.open(request, { signal })
}

/**
 * Answers a request with a download's content: headers once its length is known,
 * then the verified bytes as they arrive. A failure after the headers went out cuts
 * the connection, so the client sees a short body, never a wrong one.
 */
export async function sendDownload (ctx: RouteContext, components: SendDownloadComponents, request: DownloadRequest, headers: Record<string, string> = {}): Promise<void> {
  const { res, signal } = ctx
  const download = await openDownload(components, request, signal)
  if (download.state === 'failed') {
    throw downloadError(download.error)
  }

  res.writeHead(200, {
    ...headers,
    'content-type': 'application/octet-stream',
    // how this host got the content (local, swarm, origin), for dfget's progress line
    'x-shoal-via': download.via,
    // where `GET /api/v1/downloads/<task id>` tells its progress by source
    'x-shoal-task-id': download.taskId,
    ...(download.contentLength != null ? { 'content-length': String(download.contentLength) } : {})
  })
  try {
    await streamContent(download, components.store, res, {
      signal,
      onBytes: (n) => { components.metrics.servedBytes.inc(n) },
      fallback: uncachedOrigin(components, request)
    })
    res.end()
  } catch (err) {
    if (err instanceof DigestMismatchError) {
      await components.downloads.invalidate(download.taskId)
    } else if (err instanceof StoreReadError) {
      // the data file is gone or short: this request is cut, the next one fetches again
      await components.downloads.invalidate(download.taskId, err.message)
    }
    throw err
  }
}
