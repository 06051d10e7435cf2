import {
  commonRoutes, createMetricsRegistry, createRouter, DEFAULT_RATE, PeerNode, PullJobs, RegistryClient, SourceClient, startHttpServer, TokenBucket,
  type ComponentLogger, type HostPort, type HttpServer, type Logger, type PeerAddress, type PieceStore, type SourceTls
} from '@shoal/core'
import { ControlApi } from './api/control-api.ts'
import { ControlServer } from './api/control-server.ts'
import { apiRoutes } from './api/routes.ts'
import { SourceFetcher } from './cdn/source-fetcher.ts'
import { SupernodeMetrics } from './metrics.ts'
import { PeerRegistry } from './peers/peer-registry.ts'
import { preheatControl, preheatRoutes } from './preheat/preheat-routes.ts'
import { ScheduleService } from './scheduler/schedule-service.ts'
import { Scheduler, type SchedulerInit } from './scheduler/scheduler.ts'
import { TaskManager } from './tasks/task-manager.ts'
import { Counter, type Registry } from 'prom-client'
import type { Dispatcher } from 'undici'

export interface SupernodeInit {
  /** HTTP address of /metrics, /healthz and /api/v1/status. @default 0.0.0.0:8002 */
  listen: HostPort
  /** libp2p listen multiaddrs: the control plane, and where daemons fetch pieces. @default ['/ip4/0.0.0.0/tcp/8003'] */
  p2pListen: string[]
  /** Addresses announced to daemons instead of the listen addresses. @default [] */
  p2pAnnounce?: string[]
  /** Pieces, task index and peer key live here. @default /var/lib/shoal/supernode */
  dataDir: string
  /** Fixed piece size in bytes; by default it follows the content length. */
  pieceSize?: number
  /** Longest wait for a source's response headers. @default 30000 ms */
  sourceTimeout?: number
  /** Pieces served at once over libp2p. @default 32 */
  maxConcurrentUploads?: number
  /** The cluster's pre-shared key (`readClusterKeyFile`): only nodes holding it connect. */
  clusterKey: Uint8Array
  /**
   * Registries and hosts the supernode may fetch from: origins (`https://host[:port]`)
   * or hosts (`host[:port]`). Every other task is refused (a 403 for the daemon).
   * @default [] (every task is refused)
   */
  allowSource?: string[]
  /** Follow source redirects to private addresses (loopback, RFC 1918, link-local). @default false */
  allowPrivateRedirects?: boolean
  /**
   * TLS settings of source hosts with their own: a registry whose certificate comes from
   * a private CA (PEM), or one whose certificate is not checked. @default [] (the system's CAs)
   */
  sourceTls?: SourceTls[]
  /** Largest source accepted. @default 64 GiB */
  maxSourceBytes?: number
  /** Source responses open at once. @default 32 */
  maxSourceFetches?: number
  /**
   * Bytes of pieces the supernode may keep; over the high watermark, least recently used
   * complete tasks nobody is reading are evicted down to the low one. 0: no limit.
   * @default 0
   */
  diskQuota?: number
  /** Fraction of the quota at which eviction starts. @default 0.9 */
  diskHighWatermark?: number
  /** Fraction of the quota eviction brings usage down to. @default 0.8 */
  diskLowWatermark?: number
  /** Bytes per second of piece data sent to daemons, summed (a token bucket holding 1 s of the rate); 0: no limit. @default 0 */
  uploadRate?: number
  /**
   * The operator's token for `POST /api/v1/preheat` (`Authorization: Bearer <token>`),
   * read from `--preheat-token-file`. @default undefined: preheat over HTTP answers 403
   */
  preheatToken?: string
  /** Parent choice tuning (caps, sources per piece); see docs/scheduling.md. @default the scheduler's defaults, maxSeeding = maxConcurrentUploads */
  scheduler?: SchedulerInit
  /** Most pieces one task may have; longer content is refused (ERR_TOO_MANY_PIECES). @default 65536 */
  maxPiecesPerTask?: number
  version?: string
}

export interface SupernodeComponents {
  logger: ComponentLogger
  /** prom-client registry for this supernode's metrics. @default a new registry */
  metrics?: Registry
  /**
   * For source fetches, used as is. @default the source client's own agent, which also
   * checks DNS answers at connect time
   */
  dispatcher?: Dispatcher
}

/**
 * The supernode: fetches each task's source once (the CDN), stores it as verified
 * pieces, serves the pieces over libp2p and schedules who fetches what from whom.
 */
export class Supernode {
  private readonly init: SupernodeInit
  private readonly log: Logger
  private readonly logger: ComponentLogger
  readonly registry: Registry
  readonly tasks: TaskManager
  private readonly node: PeerNode
  /** The piece server's upload slots, which the scheduler must not oversubscribe. */
  private readonly uploadSlots: number
  private readonly source: SourceClient
  private readonly metrics: SupernodeMetrics
  private readonly peers = new PeerRegistry()
  private readonly scheduler: Scheduler
  private readonly scheduling: ScheduleService
  private selfId?: string
  private http?: HttpServer
  private control?: ControlServer
  private expiry?: NodeJS.Timeout
  private readonly preheatJobs: PullJobs
  private readonly registryClient: RegistryClient
  private readonly controller = new AbortController()

  constructor (components: SupernodeComponents, init: SupernodeInit) {
    this.init = init
    this.logger = components.logger
    this.log = components.logger.forComponent('shoal:supernode')
    this.registry = components.metrics ?? createMetricsRegistry()
    this.metrics = new SupernodeMetrics(this.registry, init.version != null ? { version: init.version } : {})
    this.source = new SourceClient({ logger: this.logger, ...(components.dispatcher != null ? { dispatcher: components.dispatcher } : {}) }, {
      allow: init.allowSource ?? [],
      allowPrivateRedirects: init.allowPrivateRedirects ?? false,
      tls: init.sourceTls ?? [],
      headersTimeout: init.sourceTimeout ?? 30_000,
      ...(init.maxSourceBytes != null ? { maxSourceBytes: init.maxSourceBytes } : {}),
      ...(init.maxSourceFetches != null ? { maxConcurrentFetches: init.maxSourceFetches } : {})
    })
    this.uploadSlots = init.maxConcurrentUploads ?? 32
    const { rateLimitedSeconds } = this.metrics
    const uploadLimit = new TokenBucket({ onWait: (seconds) => { rateLimitedSeconds.inc({ direction: 'upload' }, seconds) } }, { rate: init.uploadRate ?? DEFAULT_RATE })
    this.node = new PeerNode({ logger: this.logger, metrics: this.registry, ...(uploadLimit.limited ? { uploadLimit } : {}) }, {
      dataDir: init.dataDir,
      p2pListen: init.p2pListen,
      p2pAnnounce: init.p2pAnnounce,
      metricPrefix: 'shoal_supernode',
      maxConcurrentUploads: this.uploadSlots,
      clusterKey: init.clusterKey,
      disk: { quota: init.diskQuota ?? 0, highWatermark: init.diskHighWatermark ?? 0.9, lowWatermark: init.diskLowWatermark ?? 0.8 }
    })
    const fetcher = new SourceFetcher({ store: this.store, source: this.source, logger: this.logger, metrics: this.metrics }, {
      ...(init.pieceSize != null ? { pieceSize: init.pieceSize } : {}),
      ...(init.maxPiecesPerTask != null ? { maxPieces: init.maxPiecesPerTask } : {})
    })
    this.scheduler = new Scheduler({ peers: this.peers, self: () => this.self() }, { maxSeeding: this.uploadSlots, ...init.scheduler })
    const { scheduleDuration } = this.metrics
    this.scheduling = new ScheduleService({
      peers: this.peers,
      scheduler: this.scheduler,
      // fixed once the node started; asked for every result reported
      selfId: () => (this.selfId ??= this.self().peerId),
      onDecision: (seconds) => { scheduleDuration.observe(seconds) }
    }, {
      // a new holder wakes as many waiters as it may be sent at once
      wakePerHolder: this.scheduler.peerUploadCap
    })
    this.tasks = new TaskManager({ store: this.store, fetcher, logger: this.logger, metrics: this.metrics, listener: this.scheduling },
      { sourceHeadersTimeout: (init.sourceTimeout ?? 30_000) + 5_000 })
    const preheatJobs = new Counter({ name: 'shoal_supernode_preheat_jobs_total', help: 'Preheat jobs that ended, by result (succeeded, failed)', labelNames: ['result'], registers: [this.registry] })
    for (const result of ['succeeded', 'failed']) {
      preheatJobs.inc({ result }, 0)
    }
    this.preheatJobs = new PullJobs({
      log: components.logger.forComponent('shoal:supernode:preheat'),
      onFinished: (job) => { preheatJobs.inc({ result: job.state }) }
    })
    // manifests come through the source client, so --allow-source governs them as it does layers
    // token realms through the source client's agent for their host: --source-tls holds there too
    this.registryClient = new RegistryClient({ source: this.source })
  }

  async start (): Promise<void> {
    await this.node.start()
    await this.tasks.start()

    const api = new ControlApi({ tasks: this.tasks, peers: this.peers, scheduler: this.scheduling, metrics: this.metrics, self: () => this.self() })
    const preheat = { jobs: this.preheatJobs, tasks: this.tasks, source: this.source, registryClient: this.registryClient }
    this.control = new ControlServer({ libp2p: this.node.libp2p, api, logger: this.logger, preheat: preheatControl(preheat) })
    await this.control.start()
    this.http = await startHttpServer(this.init.listen, createRouter([
      // the status names this supernode's peer id and addresses, which is how a daemon
      // given only this HTTP address finds the control plane; it holds nothing secret
      ...commonRoutes({ registry: this.registry, status: () => ({ version: this.init.version ?? '0.0.0', ...this.self(), peers: this.peers.size }) }),
      ...apiRoutes(),
      ...preheatRoutes(preheat, this.init.preheatToken != null ? { token: this.init.preheatToken } : {})
    ], { log: this.log, signal: this.controller.signal }))

    this.metrics.observe({ tasks: () => this.tasks.all(), peerCount: () => this.peers.size, waiters: () => this.scheduling.waiters.count() })
    this.expiry = setInterval(() => {
      for (const peerId of this.peers.expire()) {
        this.tasks.removePeer(peerId)
        this.scheduler.stats.forget(peerId)
      }
      this.scheduler.stats.sweep()
      this.tasks.sweep()
    }, 15_000)
    this.expiry.unref()

    if ((this.init.allowSource ?? []).length === 0) {
      this.log.warn('no --allow-source configured: every task will be refused')
    }
    this.log.info({ url: this.http.url, ...this.self() }, 'supernode ready')
  }

  async stop (): Promise<void> {
    this.log.info('stopping')
    clearInterval(this.expiry)
    this.controller.abort(new Error('supernode stopping'))
    await this.http?.close()
    await this.control?.stop()
    await this.preheatJobs.stop()
    await this.registryClient.stop()
    await this.tasks.stop()
    await this.node.stop()
    await this.source.stop()
  }

  /** HTTP base URL (metrics, health, status), as bound. */
  get url (): string {
    if (this.http == null) {
      throw new Error('supernode is not started')
    }
    return this.http.url
  }

  /** Where the supernode keeps its pieces. */
  get store (): PieceStore {
    return this.node.store
  }

  /** How daemons reach this supernode's piece server. */
  self (): PeerAddress {
    return this.node.address()
  }
}
