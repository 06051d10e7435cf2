import { BYTE_SOURCES } from '@shoal/core'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

/**
 * Why downloads go back to the origin, exported at 0 from the start so a dashboard or an
 * alert sees the series before the first fallback; other error codes appear when they happen.
 */
export const BACK_TO_SOURCE_REASONS = ['no_supernode', 'supernode_cooldown', 'ERR_SUPERNODE_UNAVAILABLE', 'ERR_STORE_WRITE', 'ERR_PIECE_SOURCES_EXHAUSTED', 'ERR_PIECE_TIMEOUT'] as const

/** What the gauges read at scrape time. */
export interface DfgetState {
  /** Bytes expected (when known) and on disk of the downloads in progress. */
  activeProgress: () => { expected: number, completed: number }
}

export interface DfgetMetricsInit {
  /** The daemon's version, the `version` label of `shoal_dfget_build_info`. @default '0.0.0' */
  version?: string
}

/** The daemon's metrics (the piece server adds `shoal_dfget_upload_*`). */
export class DfgetMetrics {
  /** Bytes fetched into this host's store, by where they came from. */
  readonly downloadBytes: Counter<'source'>
  readonly pieces: Counter<'source' | 'result'>
  /**
   * Verified piece bytes received, by source kind (peer, supernode) and locality:
   * same_idc or cross_idc when this daemon and the source both declared an IDC, else unknown.
   */
  readonly pieceBytes: Counter<'source' | 'locality'>
  readonly downloads: Counter<'result' | 'via'>
  readonly downloadDuration: Histogram<'via'>
  readonly servedBytes: Counter
  readonly cacheHits: Counter
  readonly backToSource: Counter<'reason'>
  readonly activeDownloads: Gauge
  /** Authorization checks with the upstream before content is served, by result. */
  readonly authzChecks: Counter<'result'>
  /** 1 while downloads skip the swarm because the supernode was found unavailable (the breaker's cool-down). */
  readonly supernodeBreakerOpen: Gauge
  /** Origin fetches tried again after the origin failed (5xx, unreachable). */
  readonly originRetries: Counter
  /** Seconds pieces and origin bytes waited for the --download-rate / --upload-rate token bucket, by direction. */
  readonly rateLimitedSeconds: Counter<'direction'>
  /** 1 per configured supernode that downloads try, 0 while one cools down after it was found unavailable. */
  readonly supernodeAvailable: Gauge<'supernode'>
  /** Manifest-by-digest requests, by whether the upstream was asked (miss) or not (hit). */
  readonly manifestCache: Counter<'result'>
  /** Requests and CONNECTs through the HTTP(S) proxy, by what became of them. */
  readonly proxyRequests: Counter<'kind'>
  /** Prefetch jobs that ended, by result. */
  readonly prefetchJobs: Counter<'result'>
  private state?: DfgetState

  constructor (registry: Registry, init: DfgetMetricsInit = {}) {
    const registers = [registry]
    const state = (): DfgetState | undefined => this.state
    new Gauge({ name: 'shoal_dfget_build_info', help: 'Always 1; the daemon\'s version and the Node.js version it runs on, as labels', labelNames: ['version', 'node_version'], registers })
      .set({ version: init.version ?? '0.0.0', node_version: process.version }, 1)
    this.supernodeAvailable = new Gauge({ name: 'shoal_dfget_supernode_available', help: 'Per configured supernode: 1 while downloads try it, 0 while they skip it for the cool-down because it was found unavailable', labelNames: ['supernode'], registers })
    new Gauge({
      name: 'shoal_dfget_active_download_expected_bytes',
      help: 'Total size of the downloads in progress (those whose size is known)',
      registers,
      collect () { this.set(state()?.activeProgress().expected ?? 0) }
    })
    new Gauge({
      name: 'shoal_dfget_active_download_completed_bytes',
      help: 'Bytes of the downloads in progress already verified on disk (with shoal_dfget_active_download_expected_bytes: the host\'s progress)',
      registers,
      collect () { this.set(state()?.activeProgress().completed ?? 0) }
    })
    this.downloadBytes = new Counter({ name: 'shoal_dfget_download_bytes_total', help: 'Bytes fetched into this host, by source (origin: straight from the registry; supernode; peer: another daemon)', labelNames: ['source'], registers })
    for (const source of BYTE_SOURCES) {
      this.downloadBytes.inc({ source }, 0)
    }
    this.pieces = new Counter({ name: 'shoal_dfget_pieces_total', help: 'Piece transfers attempted, by source kind and result (ok or an error code)', labelNames: ['source', 'result'], registers })
    this.pieceBytes = new Counter({ name: 'shoal_dfget_piece_bytes_total', help: 'Verified piece bytes received, by source (peer, supernode) and locality (same_idc, cross_idc: both this daemon and the source declared an IDC; unknown: either did not)', labelNames: ['source', 'locality'], registers })
    for (const source of ['peer', 'supernode']) {
      for (const locality of ['same_idc', 'cross_idc', 'unknown']) {
        this.pieceBytes.inc({ source, locality }, 0)
      }
    }
    this.downloads = new Counter({ name: 'shoal_dfget_downloads_total', help: 'Whole downloads, by result (ok, failed) and how (swarm, origin)', labelNames: ['result', 'via'], registers })
    this.downloadDuration = new Histogram({ name: 'shoal_dfget_download_duration_seconds', help: 'Time to fetch a whole task into this host', labelNames: ['via'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers })
    this.servedBytes = new Counter({ name: 'shoal_dfget_served_bytes_total', help: 'Verified bytes streamed to local clients (the container runtime, dfget)', registers })
    this.cacheHits = new Counter({ name: 'shoal_dfget_cache_hits_total', help: 'Requests answered from content already complete on this host', registers })
    this.backToSource = new Counter({ name: 'shoal_dfget_back_to_source_total', help: 'Downloads that fell back to the origin, by reason', labelNames: ['reason'], registers })
    this.activeDownloads = new Gauge({ name: 'shoal_dfget_active_downloads', help: 'Downloads in progress', registers })
    this.authzChecks = new Counter({ name: 'shoal_dfget_authz_checks_total', help: 'Checks that a client may read content before it is served, by result (allowed and denied: the upstream answered; cached: answered without a new upstream request, from a recent allowed answer or a check already in progress for the same client and blob; error: the upstream failed or could not be reached)', labelNames: ['result'], registers })
    this.supernodeBreakerOpen = new Gauge({ name: 'shoal_dfget_supernode_breaker_open', help: 'Whether downloads skip the swarm for a cool-down because the supernode was found unavailable (1) or try it (0)', registers })
    this.originRetries = new Counter({ name: 'shoal_dfget_origin_retries_total', help: 'Origin fetches tried again, after a pause with jitter, because the origin failed (5xx, unreachable, stopped sending)', registers })
    this.rateLimitedSeconds = new Counter({ name: 'shoal_dfget_rate_limited_seconds_total', help: 'Seconds transfers waited for the rate limit, by direction (download: --download-rate, upload: --upload-rate); summed over concurrent transfers, so it may grow faster than the clock', labelNames: ['direction'], registers })
    this.manifestCache = new Counter({ name: 'shoal_dfget_manifest_cache_total', help: 'Manifest requests by digest, by result (hit: served from the verified copy held here, or sharing a fetch in progress; miss: fetched from the upstream)', labelNames: ['result'], registers })
    for (const result of ['hit', 'miss']) {
      this.manifestCache.inc({ result }, 0)
    }
    for (const direction of ['download', 'upload']) {
      this.rateLimitedSeconds.inc({ direction }, 0)
    }
    this.proxyRequests = new Counter({ name: 'shoal_dfget_proxy_requests_total', help: 'CONNECTs and plain-HTTP requests through the --proxy-listen proxy, by kind (intercepted: handed to the mirror; tunnelled: CONNECT passed through untouched; forwarded: plain HTTP passed on; refused: a peer or target not allowed; bad_request; failed: the target could not be reached)', labelNames: ['kind'], registers })
    this.prefetchJobs = new Counter({ name: 'shoal_dfget_prefetch_jobs_total', help: 'Prefetch jobs that ended, by result (succeeded, failed)', labelNames: ['result'], registers })
    for (const result of ['succeeded', 'failed']) {
      this.prefetchJobs.inc({ result }, 0)
    }
    for (const result of ['allowed', 'denied', 'error', 'cached']) {
      this.authzChecks.inc({ result }, 0)
    }
    // the series alerts and dashboards divide by exist before the first download ends
    for (const via of ['swarm', 'origin']) {
      this.downloadDuration.zero({ via })
      for (const result of ['ok', 'failed']) {
        this.downloads.inc({ result, via }, 0)
      }
    }
    for (const reason of BACK_TO_SOURCE_REASONS) {
      this.backToSource.inc({ reason }, 0)
    }
  }

  /** Where the gauges read their values at scrape time. */
  observe (state: DfgetState): void {
    this.state = state
  }
}
