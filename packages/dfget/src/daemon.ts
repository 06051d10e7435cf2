import { hostname } from 'node:os'
import {
  commonRoutes, createHttpDispatcher, createMetricsRegistry, createRouter, DEFAULT_RATE, PeerNode, PullJobs, RegistryClient, SourceClient, startHttpServer, TokenBucket,
  type ComponentLogger, type HostPort, type HttpServer, type Logger, type PeerInfo, type PieceStore
} from '@shoal/core'
import { RecentBytes } from './api/recent-bytes.ts'
import { daemonApiRoutes } from './api/routes.ts'
import { DownloadManager } from './download/download-manager.ts'
import { heldTasks } from './download/held-tasks.ts'
import { OriginFetch } from './download/origin-fetch.ts'
import { PeerTask } from './download/peer-task.ts'
import { PieceFetcher } from './download/piece-fetcher.ts'
import { openBreakersGauge, SupernodeBreaker } from './download/supernode-breaker.ts'
import { SupernodeRing } from './download/supernode-ring.ts'
import { DfgetMetrics } from './metrics.ts'
import { BlobAuthorizer, type SourceHead } from './mirror/blob-authorizer.ts'
import { ManifestCache } from './mirror/manifest-cache.ts'
import { registryErrorBody, registryMirrorRoutes } from './mirror/registry-mirror.ts'
import { UpstreamAuth } from './mirror/upstream-auth.ts'
import { Upstreams, type UpstreamInit } from './mirror/upstreams.ts'
import { upstreamHosts } from './proxy/intercepted.ts'
import { LocalCa } from './proxy/local-ca.ts'
import { ProxyServer, type InterceptedHosts } from './proxy/proxy-server.ts'
import { prefetchRoutes } from './prefetch/prefetch-routes.ts'
import { SupernodeClient } from './supernode-client.ts'
import type { Registry } from 'prom-client'
import type { Dispatcher } from 'undici'

export interface DaemonInit {
  /** Registry mirror and API address. @default 127.0.0.1:65001 */
  listen: HostPort
  /** Upstream registry the mirror stands in for, for requests without `?ns=`. @default https://registry-1.docker.io */
  registry: string
  /**
   * Further upstream registries by name, picked by containerd's `?ns=<name>`: each with
   * its URL and optionally the daemon's own credentials there and its TLS settings.
   * One named like the `--registry` host replaces it. @default []
   */
  upstreams?: UpstreamInit[]
  /**
   * The supernode: its libp2p multiaddr, or its HTTP address (the control plane is then
   * found through its `/api/v1/status`); or several of them: each task goes to the one
   * its rendezvous hash on the address strings picks (the same on every daemon given
   * the same strings), and moves to the next when that one is unavailable. null sends
   * every download straight to the origin. @default /ip4/127.0.0.1/tcp/8003
   */
  supernode: string | string[] | null
  /** libp2p listen multiaddrs, where other daemons fetch this host's pieces. @default ['/ip4/0.0.0.0/tcp/65002'] */
  p2pListen: string[]
  /** Addresses announced instead of the listen addresses. @default [] */
  p2pAnnounce?: string[]
  /** Pieces, task index and peer key. @default /var/lib/shoal/dfget */
  dataDir: string
  /** The cluster's pre-shared key (`readClusterKeyFile`): only nodes holding it connect. */
  clusterKey: Uint8Array
  /** Pieces fetched at once per download. @default 4 */
  concurrency?: number
  /** Longest one download may take. @default 1800000 ms */
  downloadTimeout?: number
  /** Pieces served at once to other peers. @default 16 */
  maxConcurrentUploads?: number
  /**
   * How often the daemon tells every supernode it is alive and which complete tasks it
   * holds (at most 4096, most recently used first). @default 60000 ms
   */
  announceInterval?: number
  /** The name this host gives the supernode. @default os.hostname() */
  hostname?: string
  /**
   * The data centre this host is in: the supernode prefers parents in the same IDC,
   * and piece bytes are counted as same_idc or cross_idc. @default none
   */
  idc?: string
  /** Where this host is, `|`-separated from wide to narrow (`eu|fra|rack7`): parents sharing the longest prefix go first. @default none */
  location?: string
  /**
   * Hosts `dfget <url>` downloads may come from besides the registry (always allowed):
   * origins (`https://host[:port]`) or hosts (`host[:port]`). Others get a 403.
   * @default []
   */
  allowSource?: string[]
  /** Follow source redirects to private addresses (loopback, RFC 1918, link-local). @default false */
  allowPrivateRedirects?: boolean
  /** Largest source accepted from the origin. @default 64 GiB */
  maxSourceBytes?: number
  /** Origin and upstream responses open at once. @default 32 */
  maxSourceFetches?: number
  /** How long the upstream's "this client may read this blob" is reused; 0 asks every time. @default 60000 ms */
  authCacheTtl?: number
  /** Longest one authorization check (a HEAD to the upstream) may take. @default 10000 ms */
  authTimeout?: number
  /**
   * Host header names the mirror and API answer to besides loopback names and the listen
   * address (when a specific IP); other Hosts get 403 (DNS rebinding). @default []
   */
  allowedHosts?: string[]
  /**
   * Longest a swarm download may go without a byte of piece data arriving from anywhere
   * before it goes back to the origin. @default 30000 ms
   */
  swarmNoProgressTimeout?: number
  /**
   * How long new downloads skip the swarm (straight to the origin) once one found the
   * supernode unavailable; then one download tries it again. 0 never skips. @default 30000 ms
   */
  supernodeCooldown?: number
  /** Tries of one origin fetch when the origin fails (5xx, unreachable), spaced by exponential back-off with full jitter. @default 4 */
  originAttempts?: number
  /**
   * Bytes of pieces this host may keep; over the high watermark, least recently used
   * complete tasks nobody is using are evicted down to the low one. 0: no limit.
   * @default 0
   */
  diskQuota?: number
  /** Fraction of the quota at which eviction starts. @default 0.9 */
  diskHighWatermark?: number
  /** Fraction of the quota eviction brings usage down to. @default 0.8 */
  diskLowWatermark?: number
  /**
   * Bytes per second of all piece data arriving from peers and the supernode plus bytes
   * from the origin, summed (a token bucket holding 1 s of the rate); 0: no limit.
   * @default 0
   */
  downloadRate?: number
  /** Bytes per second of piece data sent to other peers, summed (a token bucket holding 1 s of the rate); 0: no limit. @default 0 */
  uploadRate?: number
  /**
   * Where the HTTP(S) proxy for an unmodified dockerd (`HTTPS_PROXY`) listens; off when
   * unset. Its CA is generated at `<dataDir>/proxy/ca.crt` on first start. @default undefined
   */
  proxyListen?: HostPort
  /** Networks (CIDRs) whose peers may use the proxy besides loopback. @default [] */
  proxyAllow?: string[]
  /** Longest a tunnel or forwarded request may take to connect. @default 10000 ms */
  proxyConnectTimeout?: number
  /** A tunnel or proxy connection idle for this long is closed. @default 300000 ms */
  proxyIdleTimeout?: number
  version?: string
}

export interface DaemonComponents {
  logger: ComponentLogger
  /** @default a new registry */
  metrics?: Registry
  /**
   * For the supernode, and used as is for the upstream registry and origins.
   * @default createHttpDispatcher() for the supernode; the source client's own agent
   * (which checks DNS answers at connect time) for the registry and origins
   */
  dispatcher?: Dispatcher
  /** Asks the upstream (a HEAD, redirects not followed) whether a client may read a blob. @default a HEAD through the daemon's source client */
  sourceHead?: SourceHead
  /** The registries the proxy terminates TLS for and hands to the mirror. @default every upstream (`registry` and `upstreams`) */
  intercepted?: InterceptedHosts
}

/**
 * The per-host daemon: a registry mirror whose blobs come through the swarm, a piece
 * server for the pieces this host holds, `POST /api/v1/downloads` for `dfget`, and
 * `POST /api/v1/prefetch` to fill this host's store with an image's layers ahead of a pull.
 */
export class Daemon {
  private readonly init: DaemonInit
  private readonly logger: ComponentLogger
  private readonly log: Logger
  readonly registry: Registry
  private readonly node: PeerNode
  private readonly metrics: DfgetMetrics
  private readonly dispatcher: Dispatcher
  private readonly ownsDispatcher: boolean
  private readonly source: SourceClient
  private readonly upstreams: Upstreams
  private readonly sourceHead: SourceHead
  private readonly downloadLimit: TokenBucket
  private heartbeat?: NodeJS.Timeout
  private downloads?: DownloadManager
  private clients: SupernodeClient[] = []
  /** How the last announce to each supernode went, by address as configured. */
  private readonly supernodeState = new Map<string, { state: 'ok' | 'unreachable', at: string, error?: string }>()
  private readonly startedAt = new Date().toISOString()
  private readonly recentBytes: RecentBytes
  private http?: HttpServer
  private proxy?: ProxyServer
  private readonly intercepted: InterceptedHosts
  private prefetch?: { jobs: PullJobs, registryClient: RegistryClient }
  private readonly controller = new AbortController()

  constructor (components: DaemonComponents, init: DaemonInit) {
    this.init = init
    this.logger = components.logger
    this.log = components.logger.forComponent('shoal:dfget:daemon')
    this.registry = components.metrics ?? createMetricsRegistry()
    this.metrics = new DfgetMetrics(this.registry, init.version != null ? { version: init.version } : {})
    const downloadBytes = this.metrics.downloadBytes
    this.recentBytes = new RecentBytes({
      read: async () => Object.fromEntries((await downloadBytes.get()).values.map(v => [String(v.labels.source), v.value]))
    })
    this.ownsDispatcher = components.dispatcher == null
    this.dispatcher = components.dispatcher ?? createHttpDispatcher()
    this.upstreams = new Upstreams({ registry: init.registry, upstreams: init.upstreams ?? [] })
    this.intercepted = components.intercepted ?? upstreamHosts(this.upstreams)
    // the registries the mirror stands in for are always sources; --allow-source adds more
    this.source = new SourceClient({ logger: this.logger, ...(components.dispatcher != null ? { dispatcher: components.dispatcher } : {}) }, {
      allow: [...this.upstreams.origins(), ...init.allowSource ?? []],
      tls: this.upstreams.tls(),
      allowPrivateRedirects: init.allowPrivateRedirects ?? false,
      ...(init.maxSourceBytes != null ? { maxSourceBytes: init.maxSourceBytes } : {}),
      ...(init.maxSourceFetches != null ? { maxConcurrentFetches: init.maxSourceFetches } : {})
    })
    this.sourceHead = components.sourceHead ?? (async (url, { headers, signal }) => this.source.fetch(url, { method: 'HEAD', headers, signal, redirect: 'manual' }))
    const { rateLimitedSeconds } = this.metrics
    this.downloadLimit = new TokenBucket({ onWait: (seconds) => { rateLimitedSeconds.inc({ direction: 'download' }, seconds) } }, { rate: init.downloadRate ?? DEFAULT_RATE })
    const uploadLimit = new TokenBucket({ onWait: (seconds) => { rateLimitedSeconds.inc({ direction: 'upload' }, seconds) } }, { rate: init.uploadRate ?? DEFAULT_RATE })
    this.node = new PeerNode({ logger: this.logger, metrics: this.registry, ...(uploadLimit.limited ? { uploadLimit } : {}) }, {
      dataDir: init.dataDir,
      p2pListen: init.p2pListen,
      p2pAnnounce: init.p2pAnnounce,
      metricPrefix: 'shoal_dfget',
      maxConcurrentUploads: init.maxConcurrentUploads ?? 16,
      clusterKey: init.clusterKey,
      disk: { quota: init.diskQuota ?? 0, highWatermark: init.diskHighWatermark ?? 0.9, lowWatermark: init.diskLowWatermark ?? 0.8 }
    })
  }

  async start (): Promise<void> {
    const { logger, store, metrics, dispatcher, source } = this
    const downloadLimit = this.downloadLimit.limited ? { downloadLimit: this.downloadLimit } : {}
    await this.node.start()
    await this.recentBytes.start()
    const libp2p = this.node.libp2p

    const addresses = this.init.supernode == null ? [] : [this.init.supernode].flat()
    this.clients = addresses.map(address => new SupernodeClient({ libp2p, dispatcher }, { address }))
    const fetcher = new PieceFetcher({ libp2p, store, ...downloadLimit })
    const gauge = openBreakersGauge(metrics.supernodeBreakerOpen)
    // the same breaker state, per supernode, for dashboards that show which one is skipped
    const withAvailability = (open: { set: (value: number) => void }, supernode: string): { set: (value: number) => void } => ({
      set: (value) => {
        open.set(value)
        metrics.supernodeAvailable.set({ supernode }, value > 0 ? 0 : 1)
      }
    })
    const routes = this.clients.map(client => ({
      id: client.address,
      peerTask: new PeerTask({ client, fetcher, store, metrics, logger, self: () => this.self() }, {
        concurrency: this.init.concurrency ?? 4,
        ...(this.init.swarmNoProgressTimeout != null ? { noProgressTimeout: this.init.swarmNoProgressTimeout } : {})
      }),
      breaker: new SupernodeBreaker({ open: withAvailability(gauge(client.address), client.address) },
        this.init.supernodeCooldown != null ? { cooldown: this.init.supernodeCooldown } : {})
    }))
    const origin = new OriginFetch({ store, source, metrics, logger, ...downloadLimit },
      this.init.originAttempts != null ? { attempts: this.init.originAttempts } : {})
    this.downloads = new DownloadManager({ store, ...(routes.length > 0 ? { supernodes: new SupernodeRing(routes) } : {}), origin, metrics, logger },
      this.init.downloadTimeout != null ? { downloadTimeout: this.init.downloadTimeout } : {})
    const downloads = this.downloads
    metrics.observe({ activeProgress: () => downloads.activeProgress() })

    const authorizer = new BlobAuthorizer({ sourceHead: this.sourceHead, metrics, logger }, {
      ...(this.init.authCacheTtl != null ? { cacheTtl: this.init.authCacheTtl } : {}),
      ...(this.init.authTimeout != null ? { timeout: this.init.authTimeout } : {})
    })
    const shared = { downloads: this.downloads, store, metrics, source, authorizer }
    // a CA that cannot be loaded stops the start before anything listens
    const ca = this.init.proxyListen != null ? await LocalCa.open(this.init.dataDir, { log: this.log }) : undefined
    // the manifest comes from the upstream through the source client, like the mirror's
    // token realms through the source client's agent for their host: an upstream's caFile holds there too
    const registryClient = new RegistryClient({ source })
    const jobs = new PullJobs({ log: logger.forComponent('shoal:dfget:prefetch'), onFinished: (job) => { metrics.prefetchJobs.inc({ result: job.state }) } })
    this.prefetch = { jobs, registryClient }
    const router = createRouter([
      ...commonRoutes({ registry: this.registry, status: () => this.status() }),
      ...daemonApiRoutes(shared),
      ...prefetchRoutes({ jobs, downloads: this.downloads, source, registryClient }, { upstreams: this.upstreams }),
      ...registryMirrorRoutes({ ...shared, logger, upstreams: this.upstreams, upstreamAuth: new UpstreamAuth({ source, logger }), manifests: new ManifestCache({ metrics, logger }) })
    ], { log: this.log, errorBody: registryErrorBody, signal: this.controller.signal })
    this.http = await startHttpServer(this.init.listen, router, {
      allowedHosts: this.init.allowedHosts ?? [],
      allowedHostsHint: 'start the daemon with --allowed-host <name>',
      errorBody: registryErrorBody
    })
    if (this.init.proxyListen != null && ca != null) {
      // the same router as the mirror listener's: the proxy adds ?ns=<registry> and the
      // proxy's own peer check stands in for the Host check
      this.proxy = new ProxyServer({ logger, mirror: router, intercepted: this.intercepted, ca, requests: metrics.proxyRequests }, {
        listen: this.init.proxyListen,
        allow: this.init.proxyAllow ?? [],
        ...(this.init.proxyConnectTimeout != null ? { connectTimeout: this.init.proxyConnectTimeout } : {}),
        ...(this.init.proxyIdleTimeout != null ? { idleTimeout: this.init.proxyIdleTimeout } : {})
      })
      await this.proxy.start()
    }

    if (this.clients.length > 0) {
      // with the complete tasks held here, so a restarted supernode knows the swarm again
      const announce = (): void => {
        heldTasks(store)
          .catch((err: unknown) => { this.log.warn({ err }, 'cannot list the tasks held here'); return [] })
          .then(tasks => {
            for (const client of this.clients) {
              client.announce({ ...this.self(), tasks }, { signal: AbortSignal.timeout(10_000) })
                .then(() => { this.supernodeState.set(client.address, { state: 'ok', at: new Date().toISOString() }) })
                .catch((err: unknown) => {
                  this.supernodeState.set(client.address, { state: 'unreachable', at: new Date().toISOString(), error: (err as Error).message })
                  this.log.debug({ err, supernode: client.address }, 'announcing to the supernode failed')
                })
            }
          })
          .catch(() => {})
      }
      announce()
      this.heartbeat = setInterval(announce, this.init.announceInterval ?? 60_000)
      this.heartbeat.unref()
    }

    this.log.info({ url: this.http.url, ...(this.proxy != null ? { proxy: this.proxy.url } : {}), registry: this.init.registry, upstreams: this.upstreams.list().map(u => u.name), supernode: this.init.supernode, ...this.self() }, 'daemon ready')
  }

  async stop (): Promise<void> {
    this.log.info('stopping')
    clearInterval(this.heartbeat)
    this.controller.abort(new Error('daemon stopping'))
    // the client exists only once the node started, so self() is safe here
    await Promise.all(this.clients.map(async client => client.leave(this.self().peerId, { signal: AbortSignal.timeout(2_000) })
      .catch((err: unknown) => { this.log.debug({ err, supernode: client.address }, 'could not tell the supernode this peer is leaving') })))
    this.recentBytes.stop()
    await this.proxy?.stop()
    await this.http?.close()
    await this.prefetch?.jobs.stop()
    await this.prefetch?.registryClient.stop()
    await this.downloads?.stop()
    await this.node.stop()
    await this.source.stop()
    await this.upstreams.stop()
    if (this.ownsDispatcher) {
      await this.dispatcher.close()
    }
  }

  /** Registry mirror base URL, as bound. */
  get url (): string {
    if (this.http == null) {
      throw new Error('daemon is not started')
    }
    return this.http.url
  }

  /** The HTTP(S) proxy's URL as bound, when `proxyListen` is set. */
  get proxyUrl (): string | undefined {
    return this.proxy?.url
  }

  /** Where the daemon keeps its pieces. */
  get store (): PieceStore {
    return this.node.store
  }

  /**
   * `/api/v1/status`: version, start time, identity, and how the last announce to
   * each supernode went (`dfctl doctor` reads it: a supernode that answers TCP but not
   * the control protocol means the cluster key differs).
   */
  async status (): Promise<Record<string, unknown>> {
    const addresses = this.init.supernode == null ? [] : [this.init.supernode].flat()
    return {
      version: this.init.version ?? '0.0.0',
      startedAt: this.startedAt,
      ...this.self(),
      supernodes: addresses.map(address => ({ address, ...(this.supernodeState.get(address) ?? { state: 'unknown' }) })),
      /** bytes by source over the last hour (less while the daemon is younger) */
      lastHour: await this.recentBytes.report()
    }
  }

  /** This daemon, as the supernode and other peers know it. */
  self (): PeerInfo {
    return {
      ...this.node.address(),
      hostname: this.init.hostname ?? hostname(),
      ...(this.init.idc != null ? { idc: this.init.idc } : {}),
      ...(this.init.location != null ? { location: this.init.location } : {})
    }
  }
}
