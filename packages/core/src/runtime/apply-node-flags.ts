/**
 * Imported first by the daemon and supernode binaries (as `@shoal/core/node-flags`):
 * re-executes node with the flags of node-flags.ts when it was started without them.
 */
import { missingNodeFlags, NODE_FLAGS_APPLIED } from './node-flags.ts'

const missing = missingNodeFlags(process.env, process.execArgv)
if (missing.length > 0 && typeof process.execve === 'function' && process.argv[1] != null) {
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...missing, ...process.argv.slice(1)], { ...process.env, [NODE_FLAGS_APPLIED]: '1' })
  } catch (err) {
    // not fatal: the process works without them, only costs more CPU per byte
    process.stderr.write(`shoal: could not restart node with ${missing.join(' ')}: ${(err as Error).message}\n`)
  }
}
