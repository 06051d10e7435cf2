export { loadInventory, type Host, type Inventory, type Runtime } from './load.ts'
export { selectHosts, parseSelectors, type HostSelector } from './select.ts'
