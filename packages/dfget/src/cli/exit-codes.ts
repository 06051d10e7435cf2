import { InvalidConfigError, InvalidDigestError, InvalidImageReferenceError, ShoalError } from '@shoal/core'
import { DaemonRejectedError, DaemonUnreachableError, OutputClosedError } from '../errors.ts'

/** What `dfget` exits with; `--help` and docs/cli.md list them. */
export const EXIT = {
  /** Done (also when the reader of `-o -` went away: EPIPE ends a pipeline quietly). */
  OK: 0,
  /** The download or prefetch failed (the source, the swarm, the daemon's answer). */
  FAILED: 1,
  /** Bad usage: a missing or malformed flag, URL, image reference or digest. */
  USAGE: 2,
  /** The local daemon could not be reached (is `dfget daemon` running? --daemon). */
  DAEMON_UNREACHABLE: 3,
  /** The content did not match --digest; nothing was kept. */
  DIGEST_MISMATCH: 4,
  /** Interrupted (SIGINT, SIGTERM). */
  INTERRUPTED: 130
} as const

export const EXIT_CODES_HELP = `
Exit codes:
  0    done (also when the reader of -o - goes away, as in dfget URL -o - | head)
  1    the download or prefetch failed
  2    bad usage: a missing or malformed flag, URL, image reference or digest
  3    the local daemon could not be reached (is 'dfget daemon' running? see --daemon)
  4    the content did not match --digest (nothing was kept)
  130  interrupted`

/**
 * Runs a command body and maps what it throws to an exit code and one line on stderr.
 */
export async function withExitCodes (program: string, body: () => Promise<void>): Promise<number> {
  try {
    await body()
    return EXIT.OK
  } catch (err) {
    if (err instanceof OutputClosedError) {
      return EXIT.OK
    }
    if (err instanceof InvalidConfigError || err instanceof DaemonRejectedError || err instanceof InvalidImageReferenceError || err instanceof InvalidDigestError) {
      process.stderr.write(`${program}: ${err.message}\n${program}: see '${program} --help'\n`)
      return EXIT.USAGE
    }
    if (err instanceof ShoalError) {
      process.stderr.write(`${program}: ${err.message} (${err.code})\n`)
      return err instanceof DaemonUnreachableError ? EXIT.DAEMON_UNREACHABLE : err.code === 'ERR_DIGEST_MISMATCH' ? EXIT.DIGEST_MISMATCH : EXIT.FAILED
    }
    throw err
  }
}
