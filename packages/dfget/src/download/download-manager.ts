import {
  errorCode, raceSignal, StoreWriteError, SupernodeRequestError, SupernodeUnavailableError, TaskFailedError, taskIdFor,
  type ComponentLogger, type Logger, type PieceStore
} from '@shoal/core'
import { Download } from './download.ts'
import { RECENT_DOWNLOADS } from '../constants.ts'
import type { OriginFetch } from './origin-fetch.ts'
import type { PeerTask } from './peer-task.ts'
import { SupernodeRing } from './supernode-ring.ts'
import type { SupernodeBreaker } from './supernode-breaker.ts'
import type { DfgetMetrics } from '../metrics.ts'

export interface DownloadManagerInit {
  /** Longest a whole download may take, swarm and fallback together. @default 1800000 ms (30 min) */
  downloadTimeout?: number
}

export interface DownloadManagerComponents {
  store: Pick<PieceStore, 'getTask' | 'putTask' | 'listPieces' | 'clearPieces' | 'deleteTask' | 'checkTask' | 'pin' | 'evict'>
  /** The swarm; without one (no supernode configured) every download goes to the origin. */
  peerTask?: Pick<PeerTask, 'run'>
  /** Skips the swarm for a cool-down once the supernode was found unavailable. @default none: every download tries the swarm */
  breaker?: Pick<SupernodeBreaker, 'tryAcquire' | 'succeeded' | 'failed' | 'released'>
  /**
   * Several supernodes, each with its own swarm client and breaker: a task goes to the
   * first in its rendezvous order that is not cooling down, and moves to the next when
   * that one is unavailable. Takes the place of `peerTask` and `breaker`. @default none
   */
  supernodes?: SupernodeRing<SwarmRoute>
  origin: Pick<OriginFetch, 'run'>
  metrics: DfgetMetrics
  logger: ComponentLogger
}

/** One supernode, as the download manager uses it. */
export interface SwarmRoute {
  /** The supernode's address as configured: what tasks are hashed against, and for logs. */
  id: string
  peerTask: Pick<PeerTask, 'run'>
  breaker?: Pick<SupernodeBreaker, 'tryAcquire' | 'succeeded' | 'failed' | 'released'> | undefined
}

export interface DownloadRequest {
  url: string
  digest?: string | undefined
  /**
   * Whether content with a digest is one task whatever its URL (fetched once, shared
   * with the swarm by digest). Right for registry blobs, whose URL (checked with the
   * registry before anything is served) names the digest. `false` keys the task by URL
   * and only checks the digest: for `dfget <url> --digest`, where the URL a caller was
   * allowed to read says nothing about which content a digest it names is.
   * @default true
   */
  shareByDigest?: boolean
  /** Headers for the source (credentials). Only sent to the supernode and the origin. */
  headers?: Record<string, string> | undefined
}

/**
 * Turns "I need this content" into one {@link Download} per task, however many
 * clients ask at once: served from disk when already complete, otherwise fetched
 * through the swarm, falling back to the origin when the swarm cannot deliver.
 *
 * A download runs on its own (bounded by its timeout), not on the request that
 * started it: a client that goes away does not waste the pieces already coming.
 */
export class DownloadManager {
  private readonly components: DownloadManagerComponents
  private readonly log: Logger
  private readonly downloadTimeout: number
  private readonly active = new Map<string, Download>()
  /** The last downloads to end, so a client that streamed one to its end can still ask where its bytes came from. */
  private readonly recent = new Map<string, Download>()
  /** Opens in progress, so two clients asking at once get the same download. */
  private readonly opening = new Map<string, Promise<Download>>()
  private readonly running = new Set<Promise<void>>()
  private readonly controller = new AbortController()
  private readonly ring?: SupernodeRing<SwarmRoute>

  constructor (components: DownloadManagerComponents, init: DownloadManagerInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:dfget:downloads')
    this.downloadTimeout = init.downloadTimeout ?? 1_800_000
    this.ring = components.supernodes ??
      (components.peerTask != null ? new SupernodeRing([{ id: 'supernode', peerTask: components.peerTask, breaker: components.breaker }]) : undefined)
  }

  async stop (): Promise<void> {
    this.controller.abort(new Error('daemon stopping'))
    await Promise.allSettled([...this.running])
  }

  /**
   * The download for this content: already complete, in progress, or just started.
   * Resolves once its length is known, or it failed. Aborting `signal` gives up
   * waiting; the download itself goes on for whoever else wants it.
   */
  async open (request: DownloadRequest, options: { signal?: AbortSignal } = {}): Promise<Download> {
    const taskId = taskIdOf(request)
    let download = this.active.get(taskId)
    if (download == null) {
      let opening = this.opening.get(taskId)
      if (opening == null) {
        opening = this.fromStore(taskId, request)
          .then(stored => stored ?? this.start(taskId, request))
          .finally(() => { this.opening.delete(taskId) })
        this.opening.set(taskId, opening)
      }
      download = await opening
    }
    await raceSignal(download.ready, options.signal)
    return download
  }

  /** The download of a task in progress here, or one of the last few to end (for progress reports). */
  inProgress (taskId: string): Download | undefined {
    return this.active.get(taskId) ?? this.recent.get(taskId)
  }

  /**
   * Forgets content that failed verification or could not be read back (its data file
   * gone or short), so the next request fetches it again. A download in progress keeps
   * its own course: only what is on disk is forgotten.
   */
  async invalidate (taskId: string, reason = 'failed verification'): Promise<void> {
    if (this.active.has(taskId) || this.opening.has(taskId)) {
      // a download of it is running and writing into that file: deleting it would have
      // its readers read zeros where its earlier pieces were; the download's own digest
      // check stands guard instead
      this.log.warn({ taskId, reason }, 'stored content is damaged, but a download of it is running; leaving it to that download')
      return
    }
    this.log.warn({ taskId, reason }, 'stored content is damaged; deleting it')
    await this.components.store.deleteTask(taskId)
  }

  private async fromStore (taskId: string, request: DownloadRequest): Promise<Download | undefined> {
    const { store } = this.components
    const stored = await store.getTask(taskId)
    if (stored?.state !== 'success' || stored.contentLength == null) {
      return undefined
    }
    // the index against the disk: pieces whose bytes are gone are dropped here, before
    // any header goes out, and fetched again below
    const { intact } = await store.checkTask(taskId)
    const download = new Download({ taskId, url: request.url, digest: request.digest, shareByDigest: request.shareByDigest ?? true })
    download.via = 'local'
    download.setGeometry(stored.contentLength, stored.pieceSize)
    for (const piece of intact) {
      download.addPiece(piece)
    }
    if (download.contiguous !== stored.contentLength) {
      this.log.warn({ taskId }, 'stored task is missing pieces; fetching it again')
      await store.clearPieces(taskId)
      return undefined
    }
    download.succeed()
    this.components.metrics.cacheHits.inc()
    return download
  }

  /** Bytes expected (of downloads whose size is known) and on disk, over the downloads in progress. */
  activeProgress (): { expected: number, completed: number } {
    let expected = 0
    let completed = 0
    // bounded by the downloads in progress
    for (const download of this.active.values()) {
      if (download.contentLength != null) {
        expected += download.contentLength
        completed += download.contiguous
      }
    }
    return { expected, completed }
  }

  private start (taskId: string, request: DownloadRequest): Download {
    const download = new Download({ taskId, url: request.url, digest: request.digest, shareByDigest: request.shareByDigest ?? true })
    this.active.set(taskId, download)
    const run = this.run(download, request).finally(() => {
      this.active.delete(taskId)
      this.recent.delete(taskId)
      this.recent.set(taskId, download)
      // bounded: one over at most
      for (const oldest of this.recent.keys()) {
        if (this.recent.size <= RECENT_DOWNLOADS) {
          break
        }
        this.recent.delete(oldest)
      }
      this.running.delete(run)
    })
    this.running.add(run)
    return download
  }

  private async run (download: Download, request: DownloadRequest): Promise<void> {
    const { metrics, origin, store } = this.components
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(this.downloadTimeout)])
    const started = performance.now()
    metrics.activeDownloads.inc()
    // a download in progress is never evicted
    const unpin = store.pin(download.taskId)

    try {
      const fallback = await this.swarm(download, request, signal)
      if (fallback != null) {
        download.via = 'origin'
        // pieces hashed here as the origin's bytes arrive: checked only by the final digest
        download.piecesFinal = false
        metrics.backToSource.inc({ reason: fallback })
        await this.adoptStoredPieces(download)
        await origin.run(download, request.headers, signal)
      }

      await store.putTask({
        taskId: download.taskId, url: download.url, ...(download.digest != null ? { digest: download.digest } : {}),
        contentLength: download.contiguous, pieceSize: download.pieceSize, state: 'success', updatedAt: Date.now()
      })
      download.succeed()
      metrics.downloads.inc({ result: 'ok', via: download.via })
      metrics.downloadDuration.observe({ via: download.via }, (performance.now() - started) / 1000)
      this.log.info({ taskId: download.taskId, via: download.via, bytes: download.contiguous, ms: Math.round(performance.now() - started) }, 'download complete')
    } catch (err) {
      const error = signal.aborted && !(err instanceof TaskFailedError) ? new Error(`download of ${download.url} aborted: ${String(signal.reason)}`, { cause: err }) : err as Error
      download.fail(error)
      if (err instanceof StoreWriteError) {
        // the disk is full: what this download stored is of no use to anyone, and in the
        // way (readers already streaming keep their open file)
        await store.deleteTask(download.taskId).catch((e: unknown) => { this.log.error({ err: e, taskId: download.taskId }, 'cannot delete a partly stored task') })
      }
      metrics.downloads.inc({ result: 'failed', via: download.via })
      this.log.warn({ taskId: download.taskId, url: download.url, err: error }, 'download failed')
    } finally {
      unpin()
      metrics.activeDownloads.dec()
    }
  }

  /**
   * Tries the supernodes in the task's rendezvous order, skipping those cooling down;
   * an unavailable one hands the download (and the pieces already verified here, which
   * the next registration reports) to the next. Resolves with why the origin must take
   * over, or undefined when the swarm delivered.
   * @throws what the origin would fail on too (see {@link worthFallingBack}), or the abort
   */
  private async swarm (download: Download, request: DownloadRequest, signal: AbortSignal): Promise<string | undefined> {
    if (this.ring == null) {
      return 'no_supernode'
    }
    let reason = 'supernode_cooldown'
    // bounded: each supernode is tried at most once per download
    for (const route of this.ring.order(download.taskId)) {
      if (!(route.breaker?.tryAcquire() ?? true)) {
        this.log.debug({ taskId: download.taskId, supernode: route.id }, 'supernode cooling down; skipping it')
        continue
      }
      try {
        // the breaker closes as soon as the supernode answers, not when a long download
        // ends: a half-open breaker holds every other download back from this supernode
        await this.runOnRoute(route, download, request, signal)
        route.breaker?.succeeded()
        return undefined
      } catch (err) {
        tellBreaker(route, err, signal)
        if (signal.aborted || !this.worthFallingBack(err)) {
          throw err
        }
        reason = errorCode(err)
        if (err instanceof SupernodeUnavailableError) {
          this.log.warn({ taskId: download.taskId, supernode: route.id, err }, 'supernode unavailable; moving the download to the next one')
          continue
        }
        if (err instanceof StoreWriteError) {
          // this host's disk, not the swarm: make room, then the origin may fit
          await this.components.store.evict({ force: true, need: download.contentLength ?? 0, signal }).catch((e: unknown) => { this.log.error({ err: e }, 'eviction failed') })
        }
        this.log.warn({ taskId: download.taskId, url: download.url, reason, err }, 'swarm cannot deliver; going back to the origin')
        return reason
      }
    }
    if (reason === 'supernode_cooldown') {
      this.log.info({ taskId: download.taskId, url: download.url }, 'every supernode recently unavailable; going to the origin')
    } else {
      this.log.warn({ taskId: download.taskId, url: download.url, reason }, 'no supernode available; going back to the origin')
    }
    return reason
  }

  /**
   * One swarm attempt on one supernode. A supernode that no longer knows the task (it
   * restarted, or evicted it) answers 404: registering again resumes it there, once,
   * instead of sending the download to the origin.
   */
  private async runOnRoute (route: SwarmRoute, download: Download, request: DownloadRequest, signal: AbortSignal): Promise<void> {
    const attempt = async (): Promise<void> => {
      await route.peerTask.run(download, { headers: request.headers, signal, onRegistered: () => { route.breaker?.succeeded() } })
    }
    try {
      await attempt()
    } catch (err) {
      if (!(err instanceof SupernodeRequestError && err.statusCode === 404) || signal.aborted) {
        throw err
      }
      this.log.info({ taskId: download.taskId, supernode: route.id }, 'supernode no longer knows the task; registering again')
      await attempt()
    }
  }

  /**
   * Verified pieces left by an earlier attempt (a daemon killed mid-download), so the
   * origin continues after them with a Range request instead of starting over. The
   * geometry is only a hint for the origin fetch: the response waits for the origin's.
   */
  private async adoptStoredPieces (download: Download): Promise<void> {
    const { store } = this.components
    const stored = await store.getTask(download.taskId)
    if (download.pieceSize > 0 || stored == null || stored.pieceSize <= 0 || stored.contentLength == null) {
      return
    }
    download.pieceSize = stored.pieceSize
    for (const piece of await store.listPieces(download.taskId)) {
      download.addPiece(piece)
    }
    if (download.contiguous > 0) {
      this.log.info({ taskId: download.taskId, bytes: download.contiguous }, 'resuming from pieces already on disk')
    }
  }

  /**
   * The origin is worth a try unless it would fail the same way: the source answered
   * no (a 4xx it would give us too), or served content that does not match its
   * digest; or the supernode refused the request as malformed or the URL as not allowed.
   */
  private worthFallingBack (err: unknown): boolean {
    if (err instanceof TaskFailedError) {
      // a supernode that refused the URL (ERR_SOURCE_REFUSED, a 403) said no for the
      // operator: fetching it from here would work around that
      return err.reason !== 'ERR_DIGEST_MISMATCH' && err.reason !== 'ERR_SOURCE_REFUSED' && (err.sourceStatus == null || err.sourceStatus >= 500)
    }
    return !(err instanceof SupernodeRequestError && err.statusCode === 400)
  }
}

/** What a swarm attempt says about its supernode. */
function tellBreaker (route: SwarmRoute, err: unknown, signal: AbortSignal): void {
  if (err instanceof SupernodeUnavailableError && !signal.aborted) {
    route.breaker?.failed()
  } else if (signal.aborted) {
    route.breaker?.released()
  } else {
    // the supernode answered, even if the answer was "the source failed"
    route.breaker?.succeeded()
  }
}


/** The task a request is for: by digest when it is shared by digest, else by URL. */
function taskIdOf (request: DownloadRequest): string {
  return taskIdFor(request.shareByDigest === false ? { url: request.url } : request)
}
