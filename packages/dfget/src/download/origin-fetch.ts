import {
  cutIntoPieces, pieceSizeFor, ShoalError, SourceUnavailableError, TaskFailedError,
  type ComponentLogger, type Logger, type PieceStore, type RateLimit, type SourceClient, type SourceResponse
} from '@shoal/core'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Download } from './download.ts'
import type { DfgetMetrics } from '../metrics.ts'

export interface OriginFetchComponents {
  store: PieceStore
  /** Every origin request goes through it: allowlist, redirects, caps. */
  source: Pick<SourceClient, 'fetch'>
  metrics: DfgetMetrics
  logger: ComponentLogger
  /** This host's download limit, shared with the swarm's piece fetches. @default none */
  downloadLimit?: RateLimit
  /** Jitter source, in [0, 1). @default Math.random */
  random?: () => number
}

export interface OriginFetchInit {
  /** Tries of one origin fetch in all, when the origin fails (5xx, unreachable, stops sending); 4xx are never retried. @default 4 */
  attempts?: number
  /** Cap of the first pause between tries; it doubles with each try, and each pause is random below its cap (full jitter). @default 500 ms */
  retryDelay?: number
  /** Largest cap of one pause between tries. @default 8000 ms */
  maxRetryDelay?: number
  /** No try starts later than this after the first one. @default 60000 ms */
  retryBudget?: number
}

/**
 * Back to source: fetches the content straight from the origin when the swarm cannot
 * deliver (no supernode, supernode down, every source failing). It continues from the
 * in-order prefix already on disk with a Range request, and cuts the rest into pieces
 * the same way, so a reader streaming the download never notices the switch.
 */
export class OriginFetch {
  private readonly components: OriginFetchComponents
  private readonly log: Logger
  private readonly attempts: number
  private readonly retryDelay: number
  private readonly maxRetryDelay: number
  private readonly retryBudget: number
  private readonly random: () => number

  constructor (components: OriginFetchComponents, init: OriginFetchInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:dfget:origin')
    this.attempts = Math.max(1, init.attempts ?? 4)
    this.retryDelay = init.retryDelay ?? 500
    this.maxRetryDelay = init.maxRetryDelay ?? 8_000
    this.retryBudget = init.retryBudget ?? 60_000
    this.random = components.random ?? Math.random
  }

  /**
   * @throws {TaskFailedError} when the origin answers with an error status
   * @throws {SourceUnavailableError} when the origin cannot be reached or stops sending
   * @throws {SourceRefusedError} when the URL (or a redirect) is not one this daemon may fetch
   * @throws {SourceTooLargeError} when the content is over --max-source-bytes
   */
  async run (download: Download, headers: Record<string, string> | undefined, signal: AbortSignal): Promise<void> {
    const started = performance.now()
    // bounded: at most `attempts` tries, none starting after `retryBudget`
    for (let attempt = 1; ; attempt++) {
      try {
        await this.once(download, headers, signal)
        return
      } catch (err) {
        if (signal.aborted || !retryable(err) || attempt >= this.attempts) {
          throw err
        }
        // full jitter: a fleet of daemons falling back at once does not come back in step
        const cap = Math.min(this.maxRetryDelay, this.retryDelay * 2 ** (attempt - 1))
        const delay = Math.floor(this.random() * cap)
        if (performance.now() - started + delay > this.retryBudget) {
          throw err
        }
        this.components.metrics.originRetries.inc()
        this.log.warn({ taskId: download.taskId, url: download.url, attempt, delay, err }, 'origin failed; trying again')
        await sleep(delay, undefined, { signal })
      }
    }
  }

  private async once (download: Download, headers: Record<string, string> | undefined, signal: AbortSignal): Promise<void> {
    const pieceSize = download.pieceSize
    const resumeAt = pieceSize > 0 ? download.contiguous : 0
    if (resumeAt > 0 && download.contentLength != null && resumeAt >= download.contentLength) {
      // every byte is here already (the body failed after the last piece, or a daemon
      // was killed before it recorded the task done): asking for none would be a 416
      return
    }
    const requestHeaders: Record<string, string> = { ...headers }
    if (resumeAt > 0) {
      requestHeaders.range = `bytes=${resumeAt}-`
    }

    const res: SourceResponse = await this.components.source.fetch(download.url, { method: 'GET', headers: requestHeaders, signal })
    try {
      await this.consume(download, res, resumeAt, signal)
    } finally {
      // frees the source client's slot whatever happened (a no-op once the body ended)
      res.body.destroy()
    }
  }

  private async consume (download: Download, res: SourceResponse, resumeAt: number, signal: AbortSignal): Promise<void> {
    const { store, metrics } = this.components
    const pieceSize = download.pieceSize
    if (res.statusCode !== 200 && res.statusCode !== 206) {
      await res.dump()
      throw new TaskFailedError(`origin answered ${res.statusCode} for ${download.url}`, { sourceStatus: res.statusCode, reason: 'ERR_SOURCE_HTTP' })
    }

    let firstPiece = 0
    let contentLength = headerNumber(res.headers['content-length'])
    if (res.statusCode === 206) {
      const total = /\/(\d+)$/.exec(String(res.headers['content-range'] ?? ''))?.[1]
      const start = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''))?.[1]
      if (total == null || Number(start) !== resumeAt) {
        await res.dump()
        throw new SourceUnavailableError(`origin answered a range it was not asked for: ${String(res.headers['content-range'])}`)
      }
      contentLength = Number(total)
      firstPiece = resumeAt / pieceSize
    } else {
      // a whole answer: start over
      download.resetPieces()
      await store.clearPieces(download.taskId)
    }

    // keep the swarm's piece size when it named one for this content, so pieces stay
    // interchangeable with other peers'; otherwise cut them the supernode's default way
    const keep = pieceSize > 0 && (firstPiece > 0 || download.contentLength == null || download.contentLength === contentLength)
    const size = keep ? pieceSize : pieceSizeFor(contentLength)
    download.setGeometry(contentLength, size)
    await store.putTask({
      taskId: download.taskId, url: download.url, ...(download.digest != null ? { digest: download.digest } : {}),
      contentLength, pieceSize: size, state: 'running', updatedAt: Date.now()
    })
    this.log.info({ taskId: download.taskId, url: download.url, resumeAt, contentLength }, 'fetching from origin')

    try {
      await cutIntoPieces(store, download.taskId, res.body, {
        contentLength,
        pieceSize: size,
        firstPiece,
        signal,
        ...(this.components.downloadLimit != null ? { limit: this.components.downloadLimit } : {}),
        onPiece: (piece) => { download.addPiece(piece) },
        onChunk: (chunk) => {
          metrics.downloadBytes.inc({ source: 'origin' }, chunk.byteLength)
          download.bytesBySource.origin += chunk.byteLength
        }
      })
    } catch (err) {
      if (err instanceof ShoalError || signal.aborted) {
        throw err
      }
      throw new SourceUnavailableError(`reading ${download.url} failed: ${(err as Error).message}`)
    }
  }
}

/** The origin is failing (5xx, unreachable, stopped sending), not saying no (4xx). */
function retryable (err: unknown): boolean {
  if (err instanceof TaskFailedError) {
    return err.sourceStatus != null && err.sourceStatus >= 500
  }
  return err instanceof SourceUnavailableError
}

function headerNumber (value: string | string[] | undefined): number | null {
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : null
}
