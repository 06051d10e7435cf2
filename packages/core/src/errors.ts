/**
 * Every error Shoal throws on purpose is one of these classes. Callers branch on
 * `err.code` (stable across releases) or `err.name`, never on the message.
 */
export class ShoalError extends Error {
  static readonly code: string = 'ERR_SHOAL'
  override name = 'ShoalError'
  readonly code: string = 'ERR_SHOAL'
}

/** A string that should have been a content digest (`sha256:<64 hex>`) is not one. */
export class InvalidDigestError extends ShoalError {
  override name = 'InvalidDigestError'
  override readonly code = 'ERR_INVALID_DIGEST'
}

/** Content did not hash to the digest it was fetched under. */
export class DigestMismatchError extends ShoalError {
  override name = 'DigestMismatchError'
  override readonly code = 'ERR_DIGEST_MISMATCH'
  readonly expected: string
  readonly actual: string

  constructor (expected: string, actual: string) {
    super(`content digest is ${actual}, expected ${expected}`)
    this.expected = expected
    this.actual = actual
  }
}

/** A piece did not hash to the digest the supernode recorded for it. */
export class PieceDigestMismatchError extends ShoalError {
  override name = 'PieceDigestMismatchError'
  override readonly code = 'ERR_PIECE_DIGEST_MISMATCH'
}

/** A piece arrived shorter or longer than its range says. */
export class PieceLengthMismatchError extends ShoalError {
  override name = 'PieceLengthMismatchError'
  override readonly code = 'ERR_PIECE_LENGTH_MISMATCH'
}

/** Configuration (flags, file or environment) failed validation. */
export class InvalidConfigError extends ShoalError {
  override name = 'InvalidConfigError'
  override readonly code = 'ERR_INVALID_CONFIG'
}

/** The source (registry or file server) answered with an HTTP error status. */
export class SourceHttpError extends ShoalError {
  override name = 'SourceHttpError'
  override readonly code = 'ERR_SOURCE_HTTP'
  readonly statusCode: number

  constructor (statusCode: number, message: string) {
    super(message)
    this.statusCode = statusCode
  }
}

/** The source could not be reached or stopped sending (network error, timeout). */
export class SourceUnavailableError extends ShoalError {
  override name = 'SourceUnavailableError'
  override readonly code = 'ERR_SOURCE_UNAVAILABLE'
}

/**
 * A source fetch was refused before any connection was made: the host is not a
 * configured upstream, or a redirect led to a private address. The message says which
 * host and which flag would allow it.
 */
export class SourceRefusedError extends ShoalError {
  override name = 'SourceRefusedError'
  override readonly code = 'ERR_SOURCE_REFUSED'
  /** The host (`host[:port]`) that was refused. */
  readonly host: string

  constructor (host: string, message: string) {
    super(message)
    this.host = host
  }
}

/** A source announced (Content-Length) or sent more bytes than this component accepts. */
export class SourceTooLargeError extends ShoalError {
  override name = 'SourceTooLargeError'
  override readonly code = 'ERR_SOURCE_TOO_LARGE'
  /** The most this component accepts, in bytes. */
  readonly limit: number

  constructor (limit: number, message: string) {
    super(message)
    this.limit = limit
  }
}

/** The task is unknown to the component asked about it. */
export class TaskNotFoundError extends ShoalError {
  override name = 'TaskNotFoundError'
  override readonly code = 'ERR_TASK_NOT_FOUND'
}

/** The task failed for good (its source failed or its content did not verify). */
export class TaskFailedError extends ShoalError {
  override name = 'TaskFailedError'
  override readonly code = 'ERR_TASK_FAILED'
  /** The HTTP status the source answered with, when the failure came from the source. */
  readonly sourceStatus?: number
  /** The code of the underlying failure, such as `ERR_DIGEST_MISMATCH`. */
  readonly reason?: string

  constructor (message: string, options: { sourceStatus?: number | undefined, reason?: string | undefined } = {}) {
    super(message)
    if (options.sourceStatus != null) {
      this.sourceStatus = options.sourceStatus
    }
    if (options.reason != null) {
      this.reason = options.reason
    }
  }
}

/** A peer was asked for a piece it does not hold. */
export class PieceNotFoundError extends ShoalError {
  override name = 'PieceNotFoundError'
  override readonly code = 'ERR_PIECE_NOT_FOUND'
}

/** A peer broke the wire protocol: a malformed, oversized or unexpected message. */
export class ProtocolError extends ShoalError {
  override name = 'ProtocolError'
  override readonly code = 'ERR_PROTOCOL'
}

/** A peer refused a request because all its upload slots are taken. */
export class PeerBusyError extends ShoalError {
  override name = 'PeerBusyError'
  override readonly code = 'ERR_PEER_BUSY'
}

/** The stream ended before the number of bytes its header announced. */
export class UnexpectedEndOfStreamError extends ShoalError {
  override name = 'UnexpectedEndOfStreamError'
  override readonly code = 'ERR_UNEXPECTED_EOF'
}

/** The supernode could not be reached, or answered with a server error. */
export class SupernodeUnavailableError extends ShoalError {
  override name = 'SupernodeUnavailableError'
  override readonly code = 'ERR_SUPERNODE_UNAVAILABLE'
}

/** The supernode rejected a request (4xx): a bug or a version mismatch, not an outage. */
export class SupernodeRequestError extends ShoalError {
  override name = 'SupernodeRequestError'
  override readonly code = 'ERR_SUPERNODE_REQUEST'
  readonly statusCode: number

  constructor (statusCode: number, message: string) {
    super(message)
    this.statusCode = statusCode
  }
}

/** A task's data on disk is missing or shorter than its index says. */
export class StoreReadError extends ShoalError {
  override name = 'StoreReadError'
  override readonly code = 'ERR_STORE_READ'
}

/**
 * This host could not write or sync piece data (the disk is full, a disk error). The
 * local disk's fault, never the sending peer's: nothing was recorded.
 */
export class StoreWriteError extends ShoalError {
  override name = 'StoreWriteError'
  override readonly code = 'ERR_STORE_WRITE'
  /** The system error code, such as `ENOSPC`, when there was one. */
  readonly sysCode?: string

  constructor (message: string, options: { cause?: unknown } = {}) {
    super(message, options)
    const sys = (options.cause as { code?: unknown } | undefined)?.code
    if (typeof sys === 'string') {
      this.sysCode = sys
    }
  }
}

/** A piece transfer stalled: no bytes for its idle timeout, or not done within its time limit. */
export class PieceTimeoutError extends ShoalError {
  override name = 'PieceTimeoutError'
  override readonly code = 'ERR_PIECE_TIMEOUT'
}

/**
 * A short, stable string naming any error, for metric labels and piece reports: the
 * `code` of a Shoal error or a Node.js system error (ECONNRESET), else the name of a
 * DOMException (TimeoutError, AbortError: their numeric `code` means nothing here),
 * else ERR_UNKNOWN. At most 64 characters, as piece reports allow.
 */
export function errorCode (err: unknown): string {
  const e = err as { code?: unknown, name?: unknown } | null | undefined
  if (typeof e?.code === 'string' && e.code !== '') {
    return e.code.slice(0, 64)
  }
  if (typeof e?.name === 'string' && e.name !== '' && e.name !== 'Error') {
    return e.name.slice(0, 64)
  }
  return 'ERR_UNKNOWN'
}

/** No source (peer or supernode) delivered a piece after every one was tried. */
export class PieceSourcesExhaustedError extends ShoalError {
  override name = 'PieceSourcesExhaustedError'
  override readonly code = 'ERR_PIECE_SOURCES_EXHAUSTED'
}
