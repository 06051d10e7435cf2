/**
 * @packageDocumentation
 *
 * The Shoal supernode: the scheduler and seed of a swarm. It fetches each task's
 * source once (announcing pieces as they land, so peers start early), keeps the pieces
 * on disk with a sha256 each, serves them over libp2p (`/shoal/piece/1.0.0`), and
 * answers daemons' control calls (`/shoal/control/1.0.0`, cluster members only) with
 * which pieces to fetch from whom: peers that hold a piece first, itself last.
 *
 * @example
 *
 * ```typescript
 * import { Supernode } from '@shoal/supernode'
 * import { createLogger, readClusterKeyFile } from '@shoal/core'
 *
 * const supernode = new Supernode({ logger: createLogger() }, {
 *   listen: { host: '0.0.0.0', port: 8002 },
 *   p2pListen: ['/ip4/0.0.0.0/tcp/8003'],
 *   dataDir: '/var/lib/shoal/supernode',
 *   clusterKey: await readClusterKeyFile('/etc/shoal/cluster.key')
 * })
 * await supernode.start()
 * ```
 */

export { Supernode, type SupernodeInit, type SupernodeComponents } from './supernode.ts'
export { SupernodeMetrics } from './metrics.ts'
export { Scheduler, type SchedulerInit } from './scheduler/scheduler.ts'
export { ScheduleService, nothingLeft, type ScheduleServiceInit, type NextRequest } from './scheduler/schedule-service.ts'
export { PeerStats, type PeerStatsInit } from './scheduler/peer-stats.ts'
export { Waiters } from './scheduler/waiters.ts'
export { nearness } from './scheduler/locality.ts'
export { TooManyPiecesError } from './errors.ts'
export { PeerRegistry, type PeerRegistryInit } from './peers/peer-registry.ts'
export { TaskManager, type TaskManagerInit } from './tasks/task-manager.ts'
export { Task } from './tasks/task.ts'
export { SourceFetcher, type SourceFetcherInit } from './cdn/source-fetcher.ts'
