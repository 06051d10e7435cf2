import { spawn } from 'node:child_process'
import type { Readable } from 'node:stream'
import { DEFAULT_COMMAND_TIMEOUT } from '../constants.ts'
import { HostCommandError } from '../errors.ts'

export interface RunOptions {
  /** Fed to the command's stdin: small text, or a stream (a bundle upload). */
  input?: string | Buffer | Readable
  /** @default 120000 ms */
  timeout?: number
  signal?: AbortSignal
}

export interface RunResult {
  stdout: string
  stderr: string
  code: number
}

/** Runs shell scripts on one host. */
export interface Executor {
  /** The host's name, for messages. */
  readonly host: string
  /** Runs `script` with `sh -c` on the host; never throws for a non-zero exit. */
  run(script: string, options?: RunOptions): Promise<RunResult>
  close(): Promise<void>
}

/** Most output kept from one command: status and config files, never layers. */
const MAX_OUTPUT = 8 * 1024 * 1024

/** Quotes a string for a POSIX shell. */
export function sh (s: string): string {
  return `'${s.replace(/'/g, "'\\''")}'`
}

/**
 * Spawns a local process (sh, or ssh) with a timeout and an abort signal; output past
 * {@link MAX_OUTPUT} is an error rather than memory.
 */
export async function spawnBounded (command: string, args: string[], what: string, options: RunOptions = {}): Promise<RunResult> {
  const signal = AbortSignal.any([AbortSignal.timeout(options.timeout ?? DEFAULT_COMMAND_TIMEOUT), ...(options.signal != null ? [options.signal] : [])])
  signal.throwIfAborted()
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], signal, killSignal: 'SIGKILL' })
  const out: Buffer[] = []
  const err: Buffer[] = []
  let size = 0
  const collect = (into: Buffer[]) => (d: Buffer): void => {
    size += d.length
    if (size > MAX_OUTPUT) {
      child.kill('SIGKILL')
      return
    }
    into.push(d)
  }
  child.stdout.on('data', collect(out))
  child.stderr.on('data', collect(err))
  // a command that exits without reading its input must not crash us with EPIPE
  child.stdin.on('error', () => {})
  const input = options.input
  if (input == null || typeof input === 'string' || Buffer.isBuffer(input)) {
    child.stdin.end(input ?? '')
  } else {
    input.on('error', () => child.kill('SIGKILL'))
    input.pipe(child.stdin)
  }
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', (e) => {
      reject(signal.aborted
        ? new HostCommandError(`${what}: ${signal.reason instanceof Error && signal.reason.name === 'TimeoutError' ? 'timed out' : 'aborted'}`, { cause: e })
        : new HostCommandError(`${what}: cannot run ${command}: ${e.message}`, { cause: e }))
    })
    child.once('close', (c) => { resolve(c ?? -1) })
  })
  if (size > MAX_OUTPUT) {
    throw new HostCommandError(`${what}: more than ${MAX_OUTPUT} bytes of output`)
  }
  return { stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), code }
}

/** Commands run on this machine. */
export class LocalExecutor implements Executor {
  readonly host: string

  constructor (host: string) {
    this.host = host
  }

  async run (script: string, options: RunOptions = {}): Promise<RunResult> {
    return spawnBounded('sh', ['-c', script], `${this.host}`, options)
  }

  async close (): Promise<void> {}
}
