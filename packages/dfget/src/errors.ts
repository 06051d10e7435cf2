import { ShoalError } from '@shoal/core'

/** `dfget <url> -o <file>`: the daemon could not be reached, or refused the download. */
export class DownloadFailedError extends ShoalError {
  override name = 'DownloadFailedError'
  override readonly code = 'ERR_DOWNLOAD_FAILED'
}
