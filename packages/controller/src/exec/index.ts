import type { Host } from '../inventory/load.ts'
import { LocalExecutor, type Executor } from './executor.ts'
import { SshExecutor } from './ssh.ts'

export { sh, type Executor, type RunOptions, type RunResult } from './executor.ts'
export { LocalExecutor } from './executor.ts'
export { SshExecutor } from './ssh.ts'

/** The executor the inventory names for a host. */
export function executorFor (host: Host): Executor {
  if (host.executor === 'local') {
    return new LocalExecutor(host.name)
  }
  return new SshExecutor({ host: host.name, address: host.address, ...host.ssh })
}
