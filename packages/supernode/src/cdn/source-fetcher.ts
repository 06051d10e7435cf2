import {
  cutIntoPieces, DigestMismatchError, DigestVerifier, pieceSizeFor, ShoalError, SourceHttpError, SourceRefusedError, SourceTooLargeError,
  SourceUnavailableError, type ComponentLogger, type Logger, type PieceStore, type SourceClient, type SourceResponse, type StoredPiece
} from '@shoal/core'
import { TooManyPiecesError } from '../errors.ts'
import { DEFAULT_MAX_PIECES_PER_TASK } from '../scheduler/constants.ts'
import type { Task } from '../tasks/task.ts'
import type { SupernodeMetrics } from '../metrics.ts'

export interface SourceFetcherInit {
  /** Fixed piece size; by default it follows the content length (see `pieceSizeFor`). */
  pieceSize?: number
  /**
   * Most pieces one task may have: content whose length at its piece size means more is
   * refused (ERR_TOO_MANY_PIECES), and content without a length stops there. @default 65536
   */
  maxPieces?: number
}

export interface SourceFetcherComponents {
  store: PieceStore
  /** Every source request goes through it: allowlist, redirects, caps. */
  source: Pick<SourceClient, 'fetch'>
  logger: ComponentLogger
  metrics: SupernodeMetrics
}

export interface SourceFetchRequest {
  /**
   * Headers from the registration that started this fetch (credentials), for this
   * fetch alone: the task never keeps them.
   */
  headers?: Record<string, string> | undefined
  signal: AbortSignal
  /**
   * The geometry of a fetch cut off by a restart: the verified in-order prefix of pieces
   * on disk is kept and the source asked for the rest with a Range request (a source
   * answering 200 instead starts it over). @default none: fetched whole
   */
  resume?: { contentLength: number, pieceSize: number } | undefined
}

/** Bytes read back at a time when hashing a resumed fetch's prefix. */
const PREFIX_READ = 1024 * 1024

/** The source is fetched whole: a registrant's Range must not cut the content short. */
const NOT_FORWARDED = new Set(['range', 'if-range'])

/**
 * The supernode's CDN: fetches a task's content from its source once, cuts it into
 * pieces as it streams in, and announces each piece the moment it is on disk, so
 * peers start before the whole layer has arrived. The whole content is checked against
 * its digest at the end; on a mismatch every piece is withdrawn.
 */
export class SourceFetcher {
  private readonly components: SourceFetcherComponents
  private readonly log: Logger
  private readonly pieceSize?: number
  private readonly maxPieces: number

  constructor (components: SourceFetcherComponents, init: SourceFetcherInit = {}) {
    this.components = components
    this.maxPieces = init.maxPieces ?? DEFAULT_MAX_PIECES_PER_TASK
    this.log = components.logger.forComponent('shoal:supernode:cdn')
    if (init.pieceSize != null) {
      this.pieceSize = init.pieceSize
    }
  }

  /** The pieces 0..n-1 on disk, cut with this geometry: what a resumed fetch keeps. */
  private async verifiedPrefix (taskId: string, geometry: { contentLength: number, pieceSize: number }): Promise<StoredPiece[]> {
    const pieces = (await this.components.store.listPieces(taskId)).sort((a, b) => a.num - b.num)
    const prefix: StoredPiece[] = []
    for (const piece of pieces) {
      if (piece.num !== prefix.length || piece.offset !== piece.num * geometry.pieceSize) {
        break
      }
      prefix.push(piece)
    }
    // the whole content on disk but not marked complete: fetch it again rather than guess
    return prefix.length * geometry.pieceSize >= geometry.contentLength ? [] : prefix
  }

  private async hashPrefix (taskId: string, end: number, verifier: DigestVerifier): Promise<void> {
    await hashPrefixOf(this.components.store, taskId, end, verifier)
  }

  /**
   * Fetches the task's source into the store. Never throws: the outcome is recorded on
   * the task (`succeed` or `fail`).
   */
  async fetch (task: Task, request: SourceFetchRequest): Promise<void> {
    const { store, metrics } = this.components
    const { signal } = request
    // the URL is read once: a task reset later (another registrant) does not change this fetch
    const url = task.url
    // for logs and messages (which other registrants of the task see): a query string
    // may hold a signature
    const where = describeUrl(url)
    const started = performance.now()
    let outcome = 'ok'
    // its body holds one of the source client's slots until it ends or is destroyed
    let res: SourceResponse | undefined

    try {
      const prefix = request.resume != null ? await this.verifiedPrefix(task.id, request.resume) : []
      const resumeAt = request.resume != null ? prefix.length * request.resume.pieceSize : 0
      if (resumeAt === 0) {
        await store.clearPieces(task.id)
      }
      const headers: Record<string, string> = Object.fromEntries(Object.entries(request.headers ?? {}).filter(([k]) => !NOT_FORWARDED.has(k.toLowerCase())))
      if (resumeAt > 0) {
        headers.range = `bytes=${resumeAt}-`
      }
      // the client refuses hosts that are not upstreams, checks redirects and caps the size
      res = await this.components.source.fetch(url, { method: 'GET', headers, signal })

      const resumed = resumeAt > 0 && res.statusCode === 206 && request.resume != null &&
        String(res.headers['content-range'] ?? '') === `bytes ${resumeAt}-${request.resume.contentLength - 1}/${request.resume.contentLength}`
      if (res.statusCode !== 200 && !resumed) {
        await res.dump()
        throw new SourceHttpError(res.statusCode, `source answered ${res.statusCode} for ${where}`)
      }
      if (resumeAt > 0 && !resumed) {
        // a whole answer: start over
        prefix.length = 0
        await store.clearPieces(task.id)
      }

      const lengthHeader = res.headers['content-length']
      const contentLength = resumed ? request.resume?.contentLength ?? null : typeof lengthHeader === 'string' && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null
      const pieceSize = resumed ? request.resume?.pieceSize ?? 0 : this.pieceSize ?? pieceSizeFor(contentLength)
      if (contentLength != null && pieceSize > 0 && Math.ceil(contentLength / pieceSize) > this.maxPieces) {
        // every piece costs the scheduler memory per holder: refuse before reading a byte
        await res.dump().catch(() => {})
        throw new TooManyPiecesError(`${where} declares ${contentLength} bytes: ${Math.ceil(contentLength / pieceSize)} pieces of ${pieceSize} bytes, more than the ${this.maxPieces} a task may have`)
      }
      task.start(contentLength, pieceSize)
      for (const piece of prefix) {
        task.addPiece(piece)
      }
      await store.putTask({ taskId: task.id, url, ...(task.digest != null ? { digest: task.digest } : {}), contentLength, pieceSize, state: 'running', updatedAt: Date.now() })
      this.log.info({ taskId: task.id, url: where, contentLength, pieceSize, resumeAt: prefix.length * pieceSize }, 'fetching source')

      const verifier = task.digest != null ? new DigestVerifier(task.digest) : undefined
      if (verifier != null && prefix.length > 0) {
        await this.hashPrefix(task.id, prefix.length * pieceSize, verifier)
      }
      let total: number
      try {
        total = await cutIntoPieces(store, task.id, res.body, {
          contentLength,
          pieceSize,
          firstPiece: prefix.length,
          signal,
          onPiece: (piece) => {
            if (piece.num >= this.maxPieces) {
              // content without a declared length grew past the bound
              throw new TooManyPiecesError(`${where} sent more than ${this.maxPieces} pieces of ${pieceSize} bytes`)
            }
            task.addPiece(piece)
          },
          onChunk: (chunk) => {
            metrics.sourceBytes.inc(chunk.byteLength)
            verifier?.update(chunk)
          }
        })
      } catch (err) {
        if (err instanceof ShoalError || signal.aborted) {
          throw err
        }
        throw new SourceUnavailableError(`reading ${where} failed: ${(err as Error).message}`)
      }
      verifier?.verify()

      await store.putTask({ taskId: task.id, url, ...(task.digest != null ? { digest: task.digest } : {}), contentLength: total, pieceSize, state: 'success', updatedAt: Date.now() })
      task.succeed(total)
      this.log.info({ taskId: task.id, bytes: total, pieces: task.pieces.size, ms: Math.round(performance.now() - started) }, 'source fetched')
    } catch (err) {
      outcome = err instanceof SourceHttpError
        ? 'http_error'
        : err instanceof DigestMismatchError
          ? 'digest_mismatch'
          : err instanceof SourceRefusedError ? 'refused' : err instanceof SourceTooLargeError || err instanceof TooManyPiecesError ? 'too_large' : 'network_error'
      const e = err as Error & { code?: string, statusCode?: number }
      this.log.warn({ taskId: task.id, url: where, err, code: e.code }, 'source fetch failed')
      task.fail({
        code: e.code ?? 'ERR_SOURCE_UNAVAILABLE',
        message: e.message,
        // a refusal is this supernode saying no: the daemon relays it as a 403 and must
        // not work around it by fetching the URL itself
        ...(err instanceof SourceHttpError ? { sourceStatus: err.statusCode } : err instanceof SourceRefusedError ? { sourceStatus: 403 } : {})
      })
      if (signal.aborted && !(err instanceof DigestMismatchError)) {
        // the supernode is stopping, not the source failing: the verified pieces stay,
        // and the next start resumes after them
        return
      }
      // withdraw whatever was cut: a task that failed has no trustworthy pieces
      await store.deleteTask(task.id).catch((err: unknown) => { this.log.error({ err, taskId: task.id }, 'cannot clean up failed task') })
    } finally {
      res?.body.destroy()
      metrics.sourceFetches.inc({ result: outcome })
      metrics.sourceFetchDuration.observe({ result: outcome }, (performance.now() - started) / 1000)
    }
  }
}

/** Hashes bytes [0, end) of a task's data file into `verifier`. */
async function hashPrefixOf (store: Pick<PieceStore, 'openReader'>, taskId: string, end: number, verifier: DigestVerifier): Promise<void> {
  const reader = await store.openReader(taskId)
  try {
    const buffer = Buffer.allocUnsafe(Math.min(PREFIX_READ, end))
    // bounded: each pass reads up to 1 MiB of a prefix of known length
    for (let at = 0; at < end; at += PREFIX_READ) {
      const length = Math.min(PREFIX_READ, end - at)
      await reader.readFully(buffer, at, length)
      verifier.update(buffer.subarray(0, length))
    }
  } finally {
    await reader.close()
  }
}

/** A URL without its query or credentials, for logs and messages. */
function describeUrl (url: string): string {
  try {
    const u = new URL(url)
    return `${u.origin}${u.pathname}`
  } catch {
    return '(invalid URL)'
  }
}
