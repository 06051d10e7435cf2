/**
 * Node and V8 flags for a process that moves hundreds of MB/s through short-lived
 * buffers. The daemon and supernode binaries import `@shoal/core/node-flags`
 * (apply-node-flags.ts) before anything else; when node was not started with these
 * flags, the process re-executes itself with them (`process.execve`: same pid,
 * arguments and environment), before it has loaded or allocated anything that matters.
 *
 * Every byte a Shoal process moves passes through two or three fresh buffers (a socket
 * read, a decryption, a frame), and by default V8 answers that with a full collection
 * of its whole heap (about 28 MB here, mostly libp2p's code) every 64 MB of buffers:
 * a daemon moving 1 GiB ran about 90, and a third of its CPU went to marking.
 *
 * - `--external-memory-accounted-in-global-limit`: buffer memory counts toward the
 *   heap's ordinary growth limit instead of that fixed 64 MB step.
 * - `--heap-growing-percent=300`: the heap (buffers included) may grow to four times
 *   what survived the last collection before the next one.
 * - `--max-semi-space-size=8` (MB): a smaller young generation, which hands garbage
 *   buffers back sooner and gives back most of the memory the two flags above cost.
 *
 * Measured (docs/benchmarks.md): with `./dev bench fleet --hosts 4`, 45 CPU-seconds per
 * GiB delivered without the flags, 19 to 23 with them; peak RSS about 250 MB per
 * process against 245 without them.
 *
 * `SHOAL_NODE_FLAGS` replaces the list (set it empty for none, and no re-execution).
 */
export const DEFAULT_NODE_FLAGS = ['--external-memory-accounted-in-global-limit', '--heap-growing-percent=300', '--max-semi-space-size=8']

/** Set in the environment of the re-executed process, so it never loops. */
export const NODE_FLAGS_APPLIED = 'SHOAL_NODE_FLAGS_APPLIED'

/**
 * The flags a process started with `execArgv` still lacks: `SHOAL_NODE_FLAGS` from
 * `env` (space-separated; empty for none) or the defaults. None once a re-execution
 * has happened.
 */
export function missingNodeFlags (env: NodeJS.ProcessEnv, execArgv: readonly string[]): string[] {
  if (env[NODE_FLAGS_APPLIED] != null) {
    return []
  }
  const flags = env.SHOAL_NODE_FLAGS == null ? DEFAULT_NODE_FLAGS : env.SHOAL_NODE_FLAGS.split(/\s+/).filter(f => f !== '')
  return flags.filter(flag => !execArgv.includes(flag))
}
