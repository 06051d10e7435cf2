import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))

export const BINARIES = {
  supernode: `${REPO_ROOT}packages/supernode/dist/bin/supernode.js`,
  dfget: `${REPO_ROOT}packages/dfget/dist/bin/dfget.js`,
  dfctl: `${REPO_ROOT}packages/controller/dist/bin/dfctl.js`
} as const

export interface ManagedProcess {
  child: ChildProcess
  logFile: string
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>
  /** Sends `signal` (a crash: SIGKILL) and waits for the process to exit. */
  kill(signal: NodeJS.Signals): Promise<void>
}

export interface StartOptions {
  command: string
  args: string[]
  logFile: string
  env?: NodeJS.ProcessEnv
  /** Resolve once a line satisfies this; it returns the value to hand back. */
  ready?: (line: string) => unknown
  readyTimeoutMs?: number
}

/**
 * Starts a long-running process with its output in `logFile`, and waits until it says
 * it is ready (or exits, or times out: both are errors naming the log).
 */
export async function startProcess (options: StartOptions): Promise<{ proc: ManagedProcess, ready: unknown }> {
  const log = createWriteStream(options.logFile, { flags: 'a' })
  const child = spawn(options.command, options.args, { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout?.pipe(log, { end: false })
  child.stderr?.pipe(log, { end: false })
  const exited = new Promise<void>(resolve => child.once('exit', () => { resolve() }))

  const proc: ManagedProcess = {
    child,
    logFile: options.logFile,
    async stop (graceMs = 5_000) {
      if (child.exitCode == null && child.signalCode == null) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
        await exited
        clearTimeout(timer)
      }
      log.end()
    },
    async kill (signal) {
      if (child.exitCode == null && child.signalCode == null) {
        child.kill(signal)
        await exited
      }
      log.end()
    }
  }

  if (options.ready == null) {
    return { proc, ready: undefined }
  }
  const test = options.ready
  const timeoutMs = options.readyTimeoutMs ?? 30_000
  const ready = await new Promise<unknown>((resolve, reject) => {
    const lines = [child.stdout, child.stderr].filter(s => s != null).map(s => createInterface({ input: s }))
    const timer = setTimeout(() => { done(new Error(`${options.command} not ready after ${timeoutMs} ms; see ${options.logFile}`)) }, timeoutMs)
    const onExit = (code: number | null): void => { done(new Error(`${options.command} exited (${code}) before it was ready; see ${options.logFile}`)) }
    child.once('exit', onExit)
    function done (err: Error | null, value?: unknown): void {
      clearTimeout(timer)
      child.off('exit', onExit)
      for (const rl of lines) {
        rl.removeAllListeners('line')
        rl.close()
      }
      if (err != null) {
        reject(err)
      } else {
        resolve(value)
      }
    }
    for (const rl of lines) {
      rl.on('line', (line) => {
        const value = test(line)
        if (value !== undefined && value !== false) {
          done(null, value)
        }
      })
    }
  }).catch(async (err: unknown) => {
    await proc.stop(1_000)
    throw err
  })
  return { proc, ready }
}

/**
 * Runs a command to completion and returns its output and exit code: -1 when it was
 * killed (on timeout) or could not start at all (the reason is then in `stderr`).
 */
export async function run (command: string, args: string[], options: { env?: NodeJS.ProcessEnv, timeoutMs?: number, input?: string } = {}): Promise<{ stdout: string, stderr: string, code: number }> {
  const child = spawn(command, args, { env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  // a command that exits without reading its input must not crash us with EPIPE
  child.stdin.on('error', () => {})
  child.stdin.end(options.input ?? '')
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000)
  const code = await new Promise<number>(resolve => {
    child.once('error', (err) => { stderr += `${command}: ${err.message}\n`; resolve(-1) })
    child.once('close', (c) => { resolve(c ?? -1) })
  })
  clearTimeout(timer)
  return { stdout, stderr, code }
}

/** Parses one of our JSON log lines, or undefined. */
export function jsonLine (line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) {
    return undefined
  }
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}

/** A fresh directory for one test file's processes and data. */
export async function makeTestDir (prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `shoal-${prefix}-`))
}

/** Removes a test directory, unless SHOAL_KEEP_TEST_DIRS=1 asks to keep the logs. */
export async function removeTestDir (dir: string | undefined): Promise<void> {
  if (dir == null) {
    return
  }
  if (process.env.SHOAL_KEEP_TEST_DIRS === '1') {
    process.stderr.write(`kept test directory ${dir}\n`)
    return
  }
  await rm(dir, { recursive: true, force: true })
}
