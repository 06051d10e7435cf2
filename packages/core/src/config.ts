import { readFile } from 'node:fs/promises'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { InvalidConfigError } from './errors.ts'
import { formatIssues, type HostPort } from './http/server.ts'
import { LOG_LEVELS, type LogLevel } from './logger.ts'
import { parseByteRate } from './rate/byte-rate.ts'

/**
 * Parses `host:port` (`[v6]:port` for IPv6). Port 0 asks the OS for a free port.
 */
export function parseHostPort (value: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value)
  const host = match?.[1] ?? match?.[2]
  const port = Number(match?.[3])

  if (host == null || !Number.isInteger(port) || port > 65535) {
    throw new InvalidConfigError(`invalid listen address ${JSON.stringify(value)}: expected host:port, such as 127.0.0.1:65001`)
  }
  return { host, port }
}

/** Schema pieces shared by the components' configs. */
export const configSchemas = {
  hostPort: z.string().transform((value, ctx) => {
    try {
      return parseHostPort(value)
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message })
      return z.NEVER
    }
  }),
  httpUrl: z.string().refine(value => {
    try {
      const url = new URL(value)
      return url.protocol === 'http:' || url.protocol === 'https:'
    } catch {
      return false
    }
  }, 'must be an http:// or https:// URL').transform(value => value.replace(/\/+$/, '')),
  multiaddr: z.string().regex(/^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d+/, 'must be a TCP multiaddr such as /ip4/0.0.0.0/tcp/65002'),
  logLevel: z.enum(LOG_LEVELS as [LogLevel, ...LogLevel[]]),
  duration: z.coerce.number().int().positive(),
  /** Bytes per second, 0 for no limit: `10485760`, `100MB`, `1GiB` (see `parseByteRate`). */
  byteRate: z.union([z.number(), z.string()]).transform((value, ctx) => {
    const bytes = typeof value === 'number' ? (Number.isSafeInteger(value) && value >= 0 ? value : null) : parseByteRate(value)
    if (bytes == null) {
      ctx.addIssue({ code: 'custom', message: 'must be bytes per second, 0 for no limit: a whole number (10485760) or one with a unit (100MB, 10MiB, 1GiB; K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024)' })
      return z.NEVER
    }
    return bytes
  }),
  path: z.string().min(1)
}

/**
 * Reads a YAML (or JSON) config file into a plain object. Keys are the long flag
 * names in camelCase: `dataDir: /var/lib/shoal`.
 */
export async function readConfigFile (path: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new InvalidConfigError(`cannot read config file ${path}: ${(err as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = parseYaml(text)
  } catch (err) {
    throw new InvalidConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`)
  }
  if (parsed == null) {
    return {}
  }
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new InvalidConfigError(`config file ${path} must hold a mapping of option names to values`)
  }
  return parsed as Record<string, unknown>
}

const kebab = (key: string): string => key.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)

/**
 * Validates a config object, naming each problem by its flag (`--data-dir: ...`).
 *
 * @throws {InvalidConfigError}
 */
export function validateConfig<T> (schema: z.ZodType<T>, input: unknown): T {
  const parsed = schema.safeParse(input)
  if (!parsed.success) {
    throw new InvalidConfigError(`invalid configuration: ${formatIssues(parsed.error, path => path.length === 0 ? '' : `--${kebab(String(path[0]))}${path.slice(1).map(p => `.${String(p)}`).join('')}`)}`)
  }
  return parsed.data
}
