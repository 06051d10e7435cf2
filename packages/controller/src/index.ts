/**
 * @packageDocumentation
 *
 * The Shoal controller (`dfctl`): thin provisioning for a fleet. It prefetches release
 * images across the fleet (`dfctl prefetch`); rolling the daemon out to hosts from an
 * inventory is planned.
 */

export { selectHosts, type PrefetchHost, type HostShare } from './prefetch/select-hosts.ts'
export { prefetch, type PrefetchInit, type PrefetchComponents, type PrefetchResult, type TargetStatus } from './prefetch/prefetch.ts'
export { PrefetchRequestError, PrefetchTimeoutError } from './prefetch/errors.ts'
