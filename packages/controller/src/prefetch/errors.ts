import { ShoalError } from '@shoal/core'

/** A daemon's or supernode's prefetch/preheat API refused a request or answered nonsense. */
export class PrefetchRequestError extends ShoalError {
  override name = 'PrefetchRequestError'
  override readonly code = 'ERR_PREFETCH_REQUEST'
}

/** The prefetch ran out of `--timeout` before a job finished. */
export class PrefetchTimeoutError extends ShoalError {
  override name = 'PrefetchTimeoutError'
  override readonly code = 'ERR_PREFETCH_TIMEOUT'
}
