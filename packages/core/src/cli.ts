import { readFileSync } from 'node:fs'
import { InvalidConfigError, ShoalError } from './errors.ts'
import { readConfigFile, validateConfig } from './config.ts'
import type { Command } from 'commander'
import type { z } from 'zod'

/**
 * Resolves a command's options: built-in defaults, then the `--config` file, then
 * flags given on the command line; the result is validated against `schema`.
 *
 * @throws {InvalidConfigError}
 */
export async function resolveOptions<T> (command: Command, schema: z.ZodType<T>): Promise<T> {
  const flags = command.opts<Record<string, unknown>>()
  const merged: Record<string, unknown> = {}
  const explicit: Record<string, unknown> = {}

  for (const [key, value] of Object.entries(flags)) {
    if (command.getOptionValueSource(key) === 'default') {
      merged[key] = value
    } else {
      explicit[key] = value
    }
  }

  const file = typeof flags.config === 'string' ? await readConfigFile(flags.config) : {}
  const known = new Set(command.options.map(o => o.attributeName()))
  const unknown = Object.keys(file).filter(key => !known.has(key))
  if (unknown.length > 0) {
    throw new InvalidConfigError(`config file ${String(flags.config)}: unknown option(s) ${unknown.join(', ')}`)
  }

  return validateConfig(schema, { ...merged, ...file, ...explicit })
}

/**
 * Runs a command's body with a signal that SIGINT and SIGTERM abort, and turns errors
 * into a one-line message on stderr and a non-zero exit: 2 for bad input, 1 otherwise.
 */
export async function runMain (program: string, main: (signal: AbortSignal) => Promise<number | undefined | void>): Promise<void> {
  const controller = new AbortController()
  let interrupts = 0
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++
    if (interrupts > 1) {
      process.stderr.write(`${program}: ${sig} again, exiting now\n`)
      process.exit(130)
    }
    controller.abort(new Error(`received ${sig}`))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  try {
    const code = await main(controller.signal)
    process.exitCode = code ?? 0
  } catch (err) {
    if (err instanceof InvalidConfigError) {
      process.stderr.write(`${program}: ${err.message}\n${program}: see '${program} --help'\n`)
      process.exitCode = 2
    } else if (err instanceof ShoalError) {
      process.stderr.write(`${program}: ${err.message} (${err.code})\n`)
      process.exitCode = 1
    } else if (controller.signal.aborted) {
      process.exitCode = 130
    } else {
      process.stderr.write(`${program}: ${(err as Error)?.stack ?? String(err)}\n`)
      process.exitCode = 1
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

export interface Service {
  start(): Promise<void>
  stop(): Promise<void>
}

/** Starts a long-running service and stops it when `signal` aborts (SIGINT, SIGTERM). */
export async function serveUntilAborted (service: Service, signal: AbortSignal): Promise<void> {
  await service.start()
  if (!signal.aborted) {
    await new Promise(resolve => signal.addEventListener('abort', resolve, { once: true }))
  }
  await service.stop()
}

/** The `version` field of the package.json next to the calling module's package. */
export function packageVersion (moduleUrl: string, relative = '../../package.json'): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL(relative, moduleUrl), 'utf8')) as { version?: string }
    return pkg.version ?? '0.0.0'
  } catch {
    return '0.0.0'
  }
}
