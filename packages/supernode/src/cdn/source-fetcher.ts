import {
  cutIntoPieces, DigestMismatchError, DigestVerifier, pieceSizeFor, ShoalError, SourceHttpError, SourceUnavailableError,
  type ComponentLogger, type Logger, type PieceStore
} from '@shoal/core'
import { request, type Dispatcher } from 'undici'
import type { Task } from '../tasks/task.ts'
import type { SupernodeMetrics } from '../metrics.ts'

export interface SourceFetcherInit {
  /** Fixed piece size; by default it follows the content length (see `pieceSizeFor`). */
  pieceSize?: number
}

export interface SourceFetcherComponents {
  store: PieceStore
  dispatcher: Dispatcher
  logger: ComponentLogger
  metrics: SupernodeMetrics
}

/** Headers that must not be forwarded to a source, whoever sent them. */
const HOP_BY_HOP = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'proxy-authorization', 'proxy-connection', 'content-length', 'range'])

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

  constructor (components: SourceFetcherComponents, init: SourceFetcherInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:supernode:cdn')
    if (init.pieceSize != null) {
      this.pieceSize = init.pieceSize
    }
  }

  /**
   * Fetches the task's source into the store. Never throws: the outcome is recorded on
   * the task (`succeed` or `fail`).
   */
  async fetch (task: Task, signal: AbortSignal): Promise<void> {
    const { store, metrics } = this.components
    const started = performance.now()
    let outcome = 'ok'

    try {
      await store.clearPieces(task.id)
      const headers = Object.fromEntries(Object.entries(task.headers).filter(([k]) => !HOP_BY_HOP.has(k.toLowerCase())))
      let res: Dispatcher.ResponseData
      try {
        res = await request(task.url, { method: 'GET', headers, signal, dispatcher: this.components.dispatcher })
      } catch (err) {
        throw new SourceUnavailableError(`cannot fetch ${task.url}: ${(err as Error).message}`)
      }

      if (res.statusCode !== 200) {
        await res.body.dump({ limit: 64 * 1024 }).catch(() => {})
        throw new SourceHttpError(res.statusCode, `source answered ${res.statusCode} for ${task.url}`)
      }

      const lengthHeader = res.headers['content-length']
      const contentLength = typeof lengthHeader === 'string' && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null
      const pieceSize = this.pieceSize ?? pieceSizeFor(contentLength)
      task.start(contentLength, pieceSize)
      await store.putTask({ taskId: task.id, url: task.url, ...(task.digest != null ? { digest: task.digest } : {}), contentLength, pieceSize, state: 'running', updatedAt: Date.now() })
      this.log.info({ taskId: task.id, url: task.url, contentLength, pieceSize }, 'fetching source')

      const verifier = task.digest != null ? new DigestVerifier(task.digest) : undefined
      let total: number
      try {
        total = await cutIntoPieces(store, task.id, res.body, {
          contentLength,
          pieceSize,
          signal,
          onPiece: (piece) => { task.addPiece(piece) },
          onChunk: (chunk) => {
            metrics.sourceBytes.inc(chunk.byteLength)
            verifier?.update(chunk)
          }
        })
      } catch (err) {
        if (err instanceof ShoalError || signal.aborted) {
          throw err
        }
        throw new SourceUnavailableError(`reading ${task.url} failed: ${(err as Error).message}`)
      }
      verifier?.verify()

      await store.putTask({ taskId: task.id, url: task.url, ...(task.digest != null ? { digest: task.digest } : {}), contentLength: total, pieceSize, state: 'success', updatedAt: Date.now() })
      task.succeed(total)
      this.log.info({ taskId: task.id, bytes: total, pieces: task.pieces.size, ms: Math.round(performance.now() - started) }, 'source fetched')
    } catch (err) {
      outcome = err instanceof SourceHttpError ? 'http_error' : err instanceof DigestMismatchError ? 'digest_mismatch' : 'network_error'
      const e = err as Error & { code?: string, statusCode?: number }
      this.log.warn({ taskId: task.id, url: task.url, err, code: e.code }, 'source fetch failed')
      task.fail({
        code: e.code ?? 'ERR_SOURCE_UNAVAILABLE',
        message: e.message,
        ...(err instanceof SourceHttpError ? { sourceStatus: err.statusCode } : {})
      })
      // withdraw whatever was cut: a task that failed has no trustworthy pieces
      await store.deleteTask(task.id).catch((err: unknown) => { this.log.error({ err, taskId: task.id }, 'cannot clean up failed task') })
    } finally {
      metrics.sourceFetches.inc({ result: outcome })
      metrics.sourceFetchDuration.observe({ result: outcome }, (performance.now() - started) / 1000)
    }
  }
}
