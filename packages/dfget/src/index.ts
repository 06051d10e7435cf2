/**
 * @packageDocumentation
 *
 * The Shoal per-host daemon (`dfget daemon`) and downloader (`dfget <url> -o <file>`).
 *
 * The daemon is the registry mirror the container runtime pulls through: `/v2/` and
 * manifests pass through to the upstream registry unchanged; each blob comes through
 * the swarm as pieces from other daemons or the supernode over libp2p, every piece
 * checked against its sha256, the whole blob against its digest, streamed to the
 * client in order as it arrives. It serves the pieces it holds to other daemons, and
 * falls back to the origin when the swarm cannot deliver.
 *
 * @example
 *
 * ```typescript
 * import { Daemon } from '@shoal/dfget'
 * import { createLogger } from '@shoal/core'
 *
 * const daemon = new Daemon({ logger: createLogger() }, {
 *   listen: { host: '127.0.0.1', port: 65001 },
 *   registry: 'https://registry-1.docker.io',
 *   supernode: 'http://supernode:8002',
 *   p2pListen: ['/ip4/0.0.0.0/tcp/65002'],
 *   dataDir: '/var/lib/shoal/dfget'
 * })
 * await daemon.start()
 * ```
 */

export { Daemon, type DaemonInit, type DaemonComponents } from './daemon.ts'
export { DfgetMetrics } from './metrics.ts'
export { SupernodeClient } from './supernode-client.ts'
export { Download } from './download/download.ts'
export { DownloadManager, type SwarmRoute } from './download/download-manager.ts'
export { rendezvousScore, SupernodeRing } from './download/supernode-ring.ts'
export { PeerTask, type PeerTaskComponents } from './download/peer-task.ts'
export { PieceFetcher, type FetchOptions } from './download/piece-fetcher.ts'
export { OriginFetch, type OriginFetchInit } from './download/origin-fetch.ts'
export { openBreakersGauge, SupernodeBreaker } from './download/supernode-breaker.ts'
export type { SourceHead } from './mirror/blob-authorizer.ts'
export { downloadToFile, parseHeaders } from './cli/download-command.ts'
export { DaemonUnreachableError } from './errors.ts'
