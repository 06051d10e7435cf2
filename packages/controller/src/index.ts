/**
 * @packageDocumentation
 *
 * The Shoal controller (`dfctl`): the inventory of a fleet, the rollout of the daemon
 * to its hosts, and their status. Other commands (prefetch) select hosts with
 * {@link loadInventory} and {@link selectHosts}.
 */

export { loadInventory, selectHosts, parseSelectors, type Host, type Inventory, type HostSelector, type Runtime } from './inventory/index.ts'
export { executorFor, type Executor } from './exec/index.ts'
export { InventoryError, HostCommandError, HealthGateError, BundleError } from './errors.ts'
