import {
  commonRoutes, createHttpDispatcher, createMetricsRegistry, createRouter, PeerNode, startHttpServer,
  type ComponentLogger, type HostPort, type HttpServer, type Logger, type PeerAddress, type PieceStore
} from '@shoal/core'
import { apiRoutes } from './api/routes.ts'
import { SourceFetcher } from './cdn/source-fetcher.ts'
import { SupernodeMetrics } from './metrics.ts'
import { PeerRegistry } from './peers/peer-registry.ts'
import { Scheduler } from './scheduler/scheduler.ts'
import { TaskManager } from './tasks/task-manager.ts'
import type { Registry } from 'prom-client'
import type { Dispatcher } from 'undici'

export interface SupernodeInit {
  /** HTTP API (and /metrics) address. @default 0.0.0.0:8002 */
  listen: HostPort
  /** libp2p listen multiaddrs, where daemons fetch pieces. @default ['/ip4/0.0.0.0/tcp/8003'] */
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
  /**
   * HTTP connections open at once: every daemon with a download in progress holds one
   * or more (schedule long-polls), so this is higher than a daemon's. @default 4096
   */
  maxHttpConnections?: number
  version?: string
}

export interface SupernodeComponents {
  logger: ComponentLogger
  /** prom-client registry for this supernode's metrics. @default a new registry */
  metrics?: Registry
  /** For source fetches. @default createHttpDispatcher() */
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
  private readonly dispatcher: Dispatcher
  private readonly ownsDispatcher: boolean
  private readonly metrics: SupernodeMetrics
  private readonly peers = new PeerRegistry()
  private http?: HttpServer
  private expiry?: NodeJS.Timeout
  private readonly controller = new AbortController()

  constructor (components: SupernodeComponents, init: SupernodeInit) {
    this.init = init
    this.logger = components.logger
    this.log = components.logger.forComponent('shoal:supernode')
    this.registry = components.metrics ?? createMetricsRegistry()
    this.metrics = new SupernodeMetrics(this.registry)
    this.ownsDispatcher = components.dispatcher == null
    this.dispatcher = components.dispatcher ?? createHttpDispatcher({ headersTimeout: init.sourceTimeout ?? 30_000 })
    this.uploadSlots = init.maxConcurrentUploads ?? 32
    this.node = new PeerNode({ logger: this.logger, metrics: this.registry }, {
      dataDir: init.dataDir,
      p2pListen: init.p2pListen,
      p2pAnnounce: init.p2pAnnounce,
      metricPrefix: 'shoal_supernode',
      maxConcurrentUploads: this.uploadSlots
    })
    const fetcher = new SourceFetcher({ store: this.store, dispatcher: this.dispatcher, logger: this.logger, metrics: this.metrics },
      init.pieceSize != null ? { pieceSize: init.pieceSize } : {})
    this.tasks = new TaskManager({ store: this.store, fetcher, logger: this.logger, metrics: this.metrics },
      { sourceHeadersTimeout: (init.sourceTimeout ?? 30_000) + 5_000 })
  }

  async start (): Promise<void> {
    await this.node.start()
    await this.tasks.start()

    const scheduler = new Scheduler({ peers: this.peers, self: () => this.self() }, { maxSeeding: this.uploadSlots })
    this.http = await startHttpServer(this.init.listen, createRouter([
      ...commonRoutes({ registry: this.registry, status: () => ({ version: this.init.version ?? '0.0.0', ...this.self(), peers: this.peers.size }) }),
      ...apiRoutes({ tasks: this.tasks, peers: this.peers, scheduler, metrics: this.metrics, self: () => this.self() })
    ], { log: this.log, signal: this.controller.signal }), { maxConnections: this.init.maxHttpConnections ?? 4096 })

    this.metrics.observe({ tasks: () => this.tasks.all(), peerCount: () => this.peers.size })
    this.expiry = setInterval(() => {
      for (const peerId of this.peers.expire()) {
        this.tasks.removePeer(peerId)
      }
    }, 15_000)
    this.expiry.unref()

    this.log.info({ url: this.http.url, ...this.self() }, 'supernode ready')
  }

  async stop (): Promise<void> {
    this.log.info('stopping')
    clearInterval(this.expiry)
    this.controller.abort(new Error('supernode stopping'))
    await this.http?.close()
    await this.tasks.stop()
    await this.node.stop()
    if (this.ownsDispatcher) {
      await this.dispatcher.close()
    }
  }

  /** HTTP API base URL, as bound. */
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
