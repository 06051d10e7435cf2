import { HttpError, SourceRefusedError, taskIdFor, type PieceStore, type RouteContext, type SourceClient } from '@shoal/core'

export interface BlobHeadComponents {
  store: Pick<PieceStore, 'getTask'>
  /** For a blob this host does not hold: a HEAD to the upstream, redirects followed. */
  source: Pick<SourceClient, 'fetch'>
}

export interface BlobHeadRequest {
  /** The blob's upstream URL */
  url: string
  digest: string
  /** The client's headers for the upstream (credentials) */
  headers: Record<string, string>
  /** The length the upstream gave with its yes to this client's authorization check: no second HEAD then. */
  knownLength?: number | undefined
}

/** Registry error codes for what the upstream answers a HEAD with (a HEAD answer has no body to pass on). */
const STATUS_CODES: Record<number, string> = { 401: 'UNAUTHORIZED', 403: 'DENIED', 404: 'BLOB_UNKNOWN', 429: 'TOOMANYREQUESTS' }

/**
 * Answers `HEAD /v2/<name>/blobs/<digest>` once the caller's authorization check said
 * yes: from the local store when the blob is complete here (its length as stored, no
 * upstream request), otherwise with the length the upstream gives for a HEAD (redirects
 * to its storage followed). No blob byte is fetched either way.
 *
 * @throws {HttpError} the upstream's 4xx with its registry code, or 502 when it cannot be asked
 */
export async function sendBlobHead (ctx: RouteContext, components: BlobHeadComponents, request: BlobHeadRequest, headers: Record<string, string>): Promise<void> {
  const stored = await components.store.getTask(taskIdFor({ url: request.url, digest: request.digest }))
  if (stored?.state === 'success' && stored.contentLength != null) {
    ctx.res.writeHead(200, { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(stored.contentLength) })
    ctx.res.end()
    return
  }
  if (request.knownLength != null) {
    ctx.res.writeHead(200, { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(request.knownLength) })
    ctx.res.end()
    return
  }

  let res
  try {
    res = await components.source.fetch(request.url, { method: 'HEAD', headers: request.headers, signal: ctx.signal })
  } catch (err) {
    if (err instanceof SourceRefusedError) {
      throw new HttpError(403, 'DENIED', err.message)
    }
    throw new HttpError(502, 'UNAVAILABLE', `cannot ask ${new URL(request.url).origin} about ${request.digest}: ${(err as Error).message}`)
  }
  await res.dump()
  if (res.statusCode < 200 || res.statusCode >= 300) {
    const status = res.statusCode >= 400 && res.statusCode < 500 ? res.statusCode : 502
    throw new HttpError(status, STATUS_CODES[status] ?? 'UNAVAILABLE', `the upstream answered ${res.statusCode} to a HEAD of ${request.digest}`)
  }
  const length = res.headers['content-length']
  ctx.res.writeHead(200, {
    ...headers,
    'content-type': 'application/octet-stream',
    ...(typeof length === 'string' && /^\d+$/.test(length) ? { 'content-length': length } : {})
  })
  ctx.res.end()
}
