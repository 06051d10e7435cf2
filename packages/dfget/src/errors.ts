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

/** The proxy's local CA cannot be loaded or generated (a file missing, unreadable, malformed). */
export class ProxyCaError extends ShoalError {
  override name = 'ProxyCaError'
  override readonly code = 'ERR_PROXY_CA'
}
