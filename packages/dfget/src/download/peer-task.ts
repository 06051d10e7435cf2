import {
  errorCode, PieceSourcesExhaustedError, StoreWriteError, TaskFailedError,
  type ComponentLogger, type Logger, type PeerInfo, type PieceAssignment, type PieceResult, type PieceStore
} from '@shoal/core'
import type { Download } from './download.ts'
import type { PieceFetcher } from './piece-fetcher.ts'
import type { DfgetMetrics } from '../metrics.ts'
import type { SupernodeClient } from '../supernode-client.ts'

/** The supernode takes at most this many results per schedule call. */
const MAX_RESULTS_PER_CALL = 1024
/** An empty schedule answer faster than this did not long-poll... */
const QUICK_ANSWER_MS = 100
/** ...and the next one is asked for after this pause. */
const EMPTY_ANSWER_PAUSE_MS = 250

async function sleep (ms: number, signal: AbortSignal): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
    function done (): void {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
  })
}

export interface PeerTaskInit {
  /** Pieces fetched at once. @default 4 */
  concurrency?: number
  /** Long-poll wait when nothing is ready yet. @default 10000 ms */
  pollWait?: number
  /** Rounds in which one piece may fail on every source before giving up on the swarm. @default 5 */
  maxPieceRounds?: number
  /**
   * Longest the download may go without a byte of piece data arriving from anywhere
   * before giving up on the swarm (and going back to the origin). Slow is fine; stuck is
   * not. Longer than the piece fetcher's idle timeout, so one stalled source is dropped
   * and another tried first. @default 30000 ms
   */
  noProgressTimeout?: number
}

export interface PeerTaskComponents {
  client: Pick<SupernodeClient, 'register' | 'schedule'>
  fetcher: Pick<PieceFetcher, 'fetch'>
  store: Pick<PieceStore, 'getTask' | 'putTask' | 'listPieces' | 'clearPieces'>
  metrics: DfgetMetrics
  logger: ComponentLogger
  /** This daemon, as the supernode should know it. */
  self: () => PeerInfo
}

export interface SwarmRequest {
  headers?: Record<string, string> | undefined
  signal: AbortSignal
  /** Called once the supernode answered the registration: it is up, whatever follows. */
  onRegistered?: () => void
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
  private readonly noProgressTimeout: number

  constructor (components: PeerTaskComponents, init: PeerTaskInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:dfget:peer-task')
    this.concurrency = init.concurrency ?? 4
    this.pollWait = init.pollWait ?? 10_000
    this.maxPieceRounds = init.maxPieceRounds ?? 5
    this.noProgressTimeout = init.noProgressTimeout ?? 30_000
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
      ...(download.digest != null && download.shareByDigest ? { digest: download.digest } : {}),
      ...(request.headers != null ? { headers: request.headers } : {}),
      peer: self
    }, { signal })
    request.onRegistered?.()
    if (registration.state === 'failed') {
      throw new TaskFailedError(registration.error?.message ?? 'source failed', { sourceStatus: registration.error?.sourceStatus, reason: registration.error?.code })
    }

    // piece digests of a task still being fetched from the origin are not yet backed by
    // the whole-blob digest; those of a task that already succeeded are
    download.registered(registration.state === 'success')
    const results: PieceResult[] = []
    await this.adoptStoredPieces(download, registration.contentLength, registration.pieceSize, self.peerId, results)
    download.setGeometry(registration.contentLength, registration.pieceSize)
    await store.putTask({
      taskId: download.taskId, url: download.url, ...(download.digest != null ? { digest: download.digest } : {}),
      contentLength: registration.contentLength, pieceSize: registration.pieceSize, state: 'running', updatedAt: Date.now()
    })

    const failedRounds = new Map<number, number>()
    let pieceCount = download.pieceCount
    const progress = { at: performance.now() }
    // a piece this host could not store (disk full) ends the download: no use asking for more
    let localFailure: StoreWriteError | undefined

    // Bounded: every pass fetches, waits on a fetch or long-polls; a piece failing on
    // every source ends it after maxPieceRounds, no byte arriving for noProgressTimeout
    // ends it, and the caller's signal carries the download timeout.
    while (true) {
      signal.throwIfAborted()
      if (localFailure != null) {
        throw localFailure
      }
      if (pieceCount != null && download.have.size >= pieceCount && inflight.size === 0) {
        break
      }
      const stalledFor = performance.now() - progress.at
      if (stalledFor > this.noProgressTimeout) {
        throw new PieceSourcesExhaustedError(`no piece data arrived for ${Math.round(stalledFor / 1000)} s with ${(pieceCount ?? 0) - download.have.size} pieces missing`)
      }

      const free = this.concurrency - inflight.size
      if (free > 0) {
        const asked = performance.now()
        const answer = await client.schedule(download.taskId, {
          peerId: self.peerId,
          running: [...inflight.keys()],
          results: results.splice(0, MAX_RESULTS_PER_CALL),
          limit: free,
          // a long poll never outlasts the no-progress time, so the fallback is not late
          waitMs: inflight.size === 0 ? Math.max(0, Math.min(this.pollWait, Math.ceil(this.noProgressTimeout - stalledFor))) : 0
        }, { signal })
        if (answer.state === 'failed') {
          throw new TaskFailedError(answer.error?.message ?? 'source failed', { sourceStatus: answer.error?.sourceStatus, reason: answer.error?.code })
        }
        if (answer.contentLength != null && download.contentLength == null) {
          download.setGeometry(answer.contentLength, answer.pieceSize)
        }
        pieceCount = answer.pieceCount
        if (answer.assignments.length === 0 && inflight.size === 0 && performance.now() - asked < QUICK_ANSWER_MS) {
          // an empty answer that did not wait (the supernode thinks there is nothing
          // left for us): pause before asking again rather than spin
          await sleep(EMPTY_ANSWER_PAUSE_MS, signal)
        }

        for (const piece of answer.assignments) {
          if (download.have.has(piece.num)) {
            // reported at registration before this supernode had the piece (a task that
            // moved here from another supernode), so it was not recorded: report it again
            results.push({ num: piece.num, ok: true, source: self.peerId })
            continue
          }
          if (inflight.has(piece.num)) {
            continue
          }
          const job = this.fetchPiece(download, piece, signal, () => { progress.at = performance.now() })
            .then(outcome => {
              results.push(...outcome)
              // a busy source is no failure: the piece is simply asked for again
              if (!outcome.some(r => r.ok || r.code === 'ERR_PEER_BUSY')) {
                const rounds = (failedRounds.get(piece.num) ?? 0) + 1
                failedRounds.set(piece.num, rounds)
              }
            })
            .catch((err: unknown) => {
              if (err instanceof StoreWriteError) {
                localFailure ??= err
              }
              throw err
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
        // fetches that trickle nothing are cut off by the no-progress time, not only by
        // the piece fetcher's own (longer) idle timeout
        const left = this.noProgressTimeout - (performance.now() - progress.at)
        const wake = new AbortController()
        try {
          await Promise.race([...inflight.values(), sleep(Math.max(0, left) + 1, AbortSignal.any([signal, wake.signal]))])
        } finally {
          wake.abort()
        }
      }
      // else the long poll came back empty: the pieces this host lacks are on their way
      // to others, or the source is still arriving at the supernode; ask again
    }

    // tell the supernode about the last pieces, so others can fetch them from here
    try {
      while (results.length > 0) {
        await client.schedule(download.taskId, { peerId: self.peerId, results: results.splice(0, MAX_RESULTS_PER_CALL), limit: 0 }, { signal })
      }
    } catch (err) {
      this.log.warn({ err, taskId: download.taskId }, 'final piece report failed; peers will not be sent here for those pieces')
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

  /**
   * Tries the piece's sources in the supernode's order; returns one result per attempt.
   * A failed attempt, whatever it throws, is a result: only the download's own end
   * (its signal) stops this, so one bad piece never ends a swarm download.
   */
  private async fetchPiece (download: Download, piece: PieceAssignment, signal: AbortSignal, onProgress: () => void): Promise<PieceResult[]> {
    const { fetcher, metrics } = this.components
    const outcome: PieceResult[] = []

    for (const [i, source] of piece.sources.entries()) {
      if (i > 0 && source.kind === 'supernode' && outcome.some(r => r.code === 'ERR_PEER_BUSY')) {
        // the supernode is the last resort, not the overflow of a busy peer: hand the
        // piece back, and the scheduler finds another peer (or seeds it, within the
        // supernode's upload slots) instead of the supernode serving it once more
        break
      }
      const started = performance.now()
      try {
        const stored = await fetcher.fetch(download.taskId, piece, source, { signal, onBytes: onProgress })
        const ms = performance.now() - started
        metrics.downloadBytes.inc({ source: source.kind }, stored.length)
        download.bytesBySource[source.kind] += stored.length
        metrics.pieceBytes.inc({ source: source.kind, locality: locality(this.components.self().idc, source.idc) }, stored.length)
        metrics.pieces.inc({ source: source.kind, result: 'ok' })
        download.addPiece(stored)
        outcome.push({ num: piece.num, ok: true, source: source.peerId, bytes: stored.length, ms: Math.round(ms) })
        return outcome
      } catch (err) {
        signal.throwIfAborted()
        if (err instanceof StoreWriteError) {
          // this host's disk failed (full): not the source's fault, so no failure is
          // reported against it; the download ends and the manager decides what next
          throw err
        }
        const code = errorCode(err)
        metrics.pieces.inc({ source: source.kind, result: code })
        this.log.debug({ taskId: download.taskId, num: piece.num, source: source.peerId, code, err }, 'piece fetch failed')
        outcome.push({ num: piece.num, ok: false, source: source.peerId, code })
      }
    }
    return outcome
  }
}

/** Whether a piece crossed IDCs: known only when both ends declared theirs. */
function locality (mine: string | undefined, theirs: string | undefined): 'same_idc' | 'cross_idc' | 'unknown' {
  if (mine == null || theirs == null) {
    return 'unknown'
  }
  return mine === theirs ? 'same_idc' : 'cross_idc'
}
