/**
 * @packageDocumentation
 *
 * The Shoal controller (`dfctl`): the inventory of a fleet, the rollout of the daemon
 * to its hosts, their status, and prefetching release images across them. The
 * inventory's host selection is `selectInventoryHosts` here (`selectHosts` in
 * inventory/); `selectHosts` here picks a share of prefetch hosts.
 */

export { loadInventory, selectHosts as selectInventoryHosts, parseSelectors, type Host, type Inventory, type HostSelector, type Runtime } from './inventory/index.ts'
export { executorFor, type Executor } from './exec/index.ts'
export { InventoryError, HostCommandError, HealthGateError, BundleError } from './errors.ts'
export { selectHosts, type PrefetchHost, type HostShare } from './prefetch/select-hosts.ts'
export { prefetch, type PrefetchInit, type PrefetchComponents, type PrefetchResult, type TargetStatus } from './prefetch/prefetch.ts'
export { PrefetchRequestError, PrefetchTimeoutError } from './prefetch/errors.ts'
