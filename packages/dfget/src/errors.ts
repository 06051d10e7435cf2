import { ShoalError } from '@shoal/core'

/** `dfget <url> -o <file>`: the daemon could not be reached, or refused the download. */
export class DownloadFailedError extends ShoalError {
  override name = 'DownloadFailedError'
  override readonly code = 'ERR_DOWNLOAD_FAILED'
}

/** The upstream could not be asked whether a client may read some content (unreachable, timed out). */
export class AuthorizationUnavailableError extends ShoalError {
  override name = 'AuthorizationUnavailableError'
  override readonly code = 'ERR_AUTHZ_UNAVAILABLE'
}

/**
 * A request named (with `?ns=`) a registry that is not one of the daemon's upstreams.
 * The mirror answers 404 with a `NAME_UNKNOWN` error naming the host, never another
 * registry's content.
 */
export class UnknownUpstreamError extends ShoalError {
  override name = 'UnknownUpstreamError'
  override readonly code = 'UPSTREAM_UNKNOWN'
  /** The host the request named. */
  readonly host: string

  constructor (host: string, message: string) {
    super(message)
    this.host = host
  }
}

/** The daemon could not get a token (or learn the challenge) for its own credentials to an upstream. */
export class UpstreamAuthError extends ShoalError {
  override name = 'UpstreamAuthError'
  override readonly code = 'ERR_UPSTREAM_AUTH'
}

/** The proxy's local CA cannot be loaded or generated (a file missing, unreadable, malformed). */
export class ProxyCaError extends ShoalError {
  override name = 'ProxyCaError'
  override readonly code = 'ERR_PROXY_CA'
}

/** `dfget`: the local daemon could not be reached at all. */
export class DaemonUnreachableError extends ShoalError {
  override name = 'DaemonUnreachableError'
  override readonly code = 'ERR_DAEMON_UNREACHABLE'
}

/** `dfget <url> -o -`: whoever read the output went away (EPIPE), so there is no one left to write to. */
export class OutputClosedError extends ShoalError {
  override name = 'OutputClosedError'
  override readonly code = 'ERR_OUTPUT_CLOSED'
}

/** `dfget prefetch`: the daemon ran the job and it failed; the message has the job's reason. */
export class PrefetchFailedError extends ShoalError {
  override name = 'PrefetchFailedError'
  override readonly code = 'ERR_PREFETCH_FAILED'
}

/** `dfget`: the daemon refused the request as malformed (a 400): the caller's input, like a usage error. */
export class DaemonRejectedError extends ShoalError {
  override name = 'DaemonRejectedError'
  override readonly code = 'ERR_DAEMON_REJECTED'
}

/** `dfget --digest`: the daemon found that the content does not match the digest given (nothing was kept). */
export class ContentDigestMismatchError extends ShoalError {
  override name = 'ContentDigestMismatchError'
  override readonly code = 'ERR_DIGEST_MISMATCH'
}

/** A blob range cannot be served from what this host holds (pieces missing or moved while it was served). */
export class RangeUnservableError extends ShoalError {
  override name = 'RangeUnservableError'
  override readonly code = 'ERR_RANGE_UNSERVABLE'
}

/** `--proxy-allow`: an entry is not an IP address or CIDR. */
export class ProxyCidrError extends ShoalError {
  override name = 'ProxyCidrError'
  override readonly code = 'ERR_PROXY_CIDR'
}

/** The proxy refused a remote peer's target: it is (or resolves to) this host's loopback or a link-local address. */
export class ProxyTargetRefusedError extends ShoalError {
  override name = 'ProxyTargetRefusedError'
  override readonly code = 'ERR_PROXY_TARGET_REFUSED'
}
