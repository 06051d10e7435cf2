import { pino, type Logger as PinoLogger, type LevelWithSilent } from 'pino'

export type Logger = PinoLogger
export type LogLevel = LevelWithSilent

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/**
 * Hands each component its own namespaced logger, as libp2p's `ComponentLogger` does:
 * `components.logger.forComponent('shoal:supernode:cdn')`.
 */
export interface ComponentLogger {
  forComponent(name: string): Logger
}

export interface CreateLoggerOptions {
  /** @default 'info' */
  level?: LogLevel
  /** Where JSON lines go; file descriptor or a stream. @default 2 (stderr) */
  destination?: number | NodeJS.WritableStream
  /** Fields put on every line, such as the host name. */
  base?: Record<string, unknown>
}

/**
 * Structured JSON logs on stderr (stdout stays free for a command's own output).
 */
export function createLogger (options: CreateLoggerOptions = {}): ComponentLogger {
  const destination = options.destination ?? 2
  const root = pino({
    level: options.level ?? 'info',
    base: options.base ?? null,
    formatters: { level: (label) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime
  }, typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination)

  return {
    forComponent: (name) => root.child({ ns: name })
  }
}

/** A logger that drops everything, for tests. */
export function silentLogger (): ComponentLogger {
  return createLogger({ level: 'silent' })
}
