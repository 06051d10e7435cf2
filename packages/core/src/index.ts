/**
 * @packageDocumentation
 *
 * What Shoal's components share: the supernode HTTP API and the libp2p piece protocol
 * (each message declared once, with a schema), piece math, digests, the on-disk piece
 * store, the piece server, config and CLI helpers, logging, metrics and error classes.
 *
 * @example
 *
 * ```typescript
 * import { pieceSizeFor, pieceCount, pieceRange } from '@shoal/core'
 *
 * const size = pieceSizeFor(300 * 1024 * 1024) // 5 MiB
 * const last = pieceRange(pieceCount(300 * 1024 * 1024, size) - 1, 300 * 1024 * 1024, size)
 * ```
 */

export * from './errors.ts'
export * from './digest.ts'
export * from './pieces.ts'
export * from './task-id.ts'
export * from './logger.ts'
export * from './metrics.ts'
export * from './config.ts'
export * from './cli.ts'
export * from './http/http-error.ts'
export * from './http/server.ts'
export * from './http/common-routes.ts'
export * from './protocol/api.ts'
export * from './protocol/piece-protocol.ts'
export * from './p2p/framed-stream.ts'
export * from './p2p/node.ts'
export * from './p2p/piece-server.ts'
export * from './p2p/peer-node.ts'
export * from './change-notifier.ts'
export * from './store/piece-store.ts'
export * from './store/piece-writer.ts'
export * from './store/task-reader.ts'
export * from './store/disk-quota.ts'
export * from './http/client.ts'
export * from './store/cut-pieces.ts'
export * from './race-signal.ts'
export * from './rate/token-bucket.ts'
export { DEFAULT_NODE_FLAGS, missingNodeFlags } from './runtime/node-flags.ts'
export * from './protocol/control-protocol.ts'
export { controlCall, type ControlCallComponents } from './p2p/control-call.ts'
export { generateClusterKey, parseClusterKey, readClusterKeyFile, writeClusterKeyFile } from './p2p/cluster-key.ts'
export { SourceClient, type SourceClientInit, type SourceClientComponents, type SourceFetchOptions, type SourceResponse, type SourceTls } from './source/source-client.ts'
export * as sourceDefaults from './source/constants.ts'
export { clusterKeyOption, diskOptions, diskOptionsSchema } from './shared-options.ts'
export { parseImageReference, formatImageReference, isDockerHub, isRegistryHost, InvalidImageReferenceError, type ImageReference } from './image/reference.ts'
export { RegistryClient, BlobAuthorization, TOKEN_REUSE_MS, ImageResolveError, RegistryAuthError, parsePlatform, type ImageBlob, type ResolvedImage, type ResolveOptions, type RegistryCredentials, type RegistryClientInit, type RegistryClientComponents } from './image/registry-client.ts'
export { PullJobs, TooManyJobsError, type PullJobView, type PullJobLayer, type PullJobSpec, type PullJobPlan, type PullJobsInit, type PullJobsComponents, type PullJobState, type PullByteSource } from './image/pull-jobs.ts'
export * as imageDefaults from './image/constants.ts'
export { pullJobRoutes, checkJobSource, pullJobRequestSchema, MAX_JOB_URLS, type PullJobRequest, type PullJobRoutesInit } from './image/job-routes.ts'
