import {
  PieceSourcesExhaustedError, TaskFailedError,
  type ComponentLogger, type Logger, type PeerInfo, type PieceAssignment, type PieceResult, type PieceStore, type ScheduleResponse
} from '@shoal/core'
import type { Download } from './download.ts'
import type { PieceFetcher } from './piece-fetcher.ts'
import type { DfgetMetrics } from '../metrics.ts'
import type { SupernodeClient } from '../supernode-client.ts'

/** The supernode takes at most this many results per schedule call. */
const MAX_RESULTS_PER_CALL = 1024

export interface PeerTaskInit {
  /** Pieces fetched at once. @default 4 */
  concurrency?: number
  /** Long-poll wait when nothing is ready yet. @default 10000 ms */
  pollWait?: number
  /** Rounds in which one piece may fail on every source before giving up on the swarm. @default 5 */
  maxPieceRounds?: number
  /**
   * Long polls in a row that bring nothing while the supernode holds the whole task,
   * before giving up on the swarm. @default 6
   */
  maxIdlePolls?: number
}

export interface PeerTaskComponents {
  client: SupernodeClient
  fetcher: PieceFetcher
  store: PieceStore
  metrics: DfgetMetrics
  logger: ComponentLogger
  /** This daemon, as the supernode should know it. */
  self: () => PeerInfo
}

export interface SwarmRequest {
  headers?: Record<string, string> | undefined
  signal: AbortSignal
}

/**
 * Downloads one task through the swarm: registers with the supernode, then asks it for
 * pieces (reporting each result) and fetches them from the sources it names, a few at
 * a time, until every piece is on disk.
 */
export class PeerTask {
  private readonly components: PeerTaskComponents
  private readonly log: Logger
  private readonly concurrency: number
  private readonly pollWait: number
  private readonly maxPieceRounds: number
  private readonly maxIdlePolls: number

  constructor (components: PeerTaskComponents, init: PeerTaskInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:dfget:peer-task')
    this.concurrency = init.concurrency ?? 4
    this.pollWait = init.pollWait ?? 10_000
    this.maxPieceRounds = init.maxPieceRounds ?? 5
    this.maxIdlePolls = init.maxIdlePolls ?? 6
  }

  /**
   * @throws {TaskFailedError} when the supernode reports the source failed
   * @throws {SupernodeUnavailableError | SupernodeRequestError | PieceSourcesExhaustedError} when the swarm cannot deliver
   */
  async run (download: Download, request: SwarmRequest): Promise<void> {
    const self = this.components.self()
    // fetches still running when this returns (on failure) are cut off, so nothing
    // writes to the store behind the back of whoever takes over (the origin fallback)
    const controller = new AbortController()
    const signal = AbortSignal.any([request.signal, controller.signal])
    const inflight = new Map<number, Promise<void>>()
    try {
      await this.download(download, request, self, signal, inflight)
    } finally {
      controller.abort(new Error('peer task ended'))
      await Promise.allSettled(inflight.values())
    }
  }

  private async download (download: Download, request: SwarmRequest, self: PeerInfo, signal: AbortSignal, inflight: Map<number, Promise<void>>): Promise<void> {
    const { client, store } = this.components

    const registration = await client.register({
      url: download.url,
      ...(download.digest != null ? { digest: download.digest } : {}),
      ...(request.headers != null ? { headers: request.headers } : {}),
      peer: self
    }, { signal })
    if (registration.state === 'failed') {
      throw new TaskFailedError(registration.error?.message ?? 'source failed', { sourceStatus: registration.error?.sourceStatus, reason: registration.error?.code })
    }

    const results: PieceResult[] = []
    await this.adoptStoredPieces(download, registration.contentLength, registration.pieceSize, self.peerId, results)
    download.setGeometry(registration.contentLength, registration.pieceSize)
    await store.putTask({
      taskId: download.taskId, url: download.url, ...(download.digest != null ? { digest: download.digest } : {}),
      contentLength: registration.contentLength, pieceSize: registration.pieceSize, state: 'running', updatedAt: Date.now()
    })

    const failedRounds = new Map<number, number>()
    let state: ScheduleResponse['state'] = registration.state
    let pieceCount = download.pieceCount
    let idlePolls = 0

    // Bounded: every pass fetches, waits on a fetch or long-polls; a piece failing on
    // every source ends it after maxPieceRounds, and the caller's signal carries the
    // download timeout.
    while (true) {
      signal.throwIfAborted()
      if (pieceCount != null && download.have.size >= pieceCount && inflight.size === 0) {
        break
      }

      const free = this.concurrency - inflight.size
      let assigned = 0
      if (free > 0) {
        const answer = await client.schedule(download.taskId, {
          peerId: self.peerId,
          running: [...inflight.keys()],
          results: results.splice(0, MAX_RESULTS_PER_CALL),
          limit: free,
          waitMs: inflight.size === 0 ? this.pollWait : 0
        }, { signal })
        state = answer.state
        if (state === 'failed') {
          throw new TaskFailedError(answer.error?.message ?? 'source failed', { sourceStatus: answer.error?.sourceStatus, reason: answer.error?.code })
        }
        if (answer.contentLength != null && download.contentLength == null) {
          download.setGeometry(answer.contentLength, answer.pieceSize)
        }
        pieceCount = answer.pieceCount

        for (const piece of answer.assignments) {
          if (download.have.has(piece.num) || inflight.has(piece.num)) {
            continue
          }
          assigned++
          const job = this.fetchPiece(download, piece, signal)
            .then(outcome => {
              results.push(...outcome)
              // a busy source is no failure: the piece is simply asked for again
              if (!outcome.some(r => r.ok || r.code === 'ERR_PEER_BUSY')) {
                const rounds = (failedRounds.get(piece.num) ?? 0) + 1
                failedRounds.set(piece.num, rounds)
              }
            })
            .finally(() => { inflight.delete(piece.num) })
          job.catch(() => {}) // the loop sees the failure through Promise.race
          inflight.set(piece.num, job)
        }
      }

      const exhausted = [...failedRounds].find(([, rounds]) => rounds >= this.maxPieceRounds)
      if (exhausted != null) {
        throw new PieceSourcesExhaustedError(`piece ${exhausted[0]} failed on every source ${exhausted[1]} times`)
      }
      if (inflight.size > 0) {
        idlePolls = 0
        await Promise.race(inflight.values())
      } else if (assigned === 0 && state === 'success') {
        // the long poll came back empty: pieces are being seeded to others, or (after
        // many rounds) the swarm has lost them
        idlePolls++
        if (idlePolls >= this.maxIdlePolls) {
          throw new PieceSourcesExhaustedError(`no source offered for ${(pieceCount ?? 0) - download.have.size} missing pieces in ${idlePolls} polls`)
        }
      }
    }

    // tell the supernode about the last pieces, so others can fetch them from here
    try {
      while (results.length > 0) {
        await client.schedule(download.taskId, { peerId: self.peerId, results: results.splice(0, MAX_RESULTS_PER_CALL), limit: 0 }, { signal })
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message, taskId: download.taskId }, 'final piece report failed; peers will not be sent here for those pieces')
    }
  }

  /** Pieces already on disk from an earlier attempt count, if they were cut the same way. */
  private async adoptStoredPieces (download: Download, contentLength: number | null, pieceSize: number, self: string, results: PieceResult[]): Promise<void> {
    const { store } = this.components
    const stored = await store.getTask(download.taskId)
    download.resetPieces()
    if (stored == null) {
      return
    }
    if (contentLength == null || stored.pieceSize !== pieceSize || stored.contentLength !== contentLength) {
      await store.clearPieces(download.taskId)
      return
    }
    for (const piece of await store.listPieces(download.taskId)) {
      download.addPiece(piece)
      results.push({ num: piece.num, ok: true, source: self })
    }
  }

  /** Tries the piece's sources in the supernode's order; returns one result per attempt. */
  private async fetchPiece (download: Download, piece: PieceAssignment, signal: AbortSignal): Promise<PieceResult[]> {
    const { fetcher, metrics } = this.components
    const outcome: PieceResult[] = []

    for (const source of piece.sources) {
      const started = performance.now()
      try {
        const stored = await fetcher.fetch(download.taskId, piece, source, { signal })
        const ms = performance.now() - started
        metrics.downloadBytes.inc({ source: source.kind }, stored.length)
        metrics.pieces.inc({ source: source.kind, result: 'ok' })
        download.addPiece(stored)
        outcome.push({ num: piece.num, ok: true, source: source.peerId, bytes: stored.length, ms: Math.round(ms) })
        return outcome
      } catch (err) {
        signal.throwIfAborted()
        const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN'
        metrics.pieces.inc({ source: source.kind, result: code })
        this.log.debug({ taskId: download.taskId, num: piece.num, source: source.peerId, code, err: (err as Error).message }, 'piece fetch failed')
        outcome.push({ num: piece.num, ok: false, source: source.peerId, code: code.slice(0, 64) })
      }
    }
    return outcome
  }
}
