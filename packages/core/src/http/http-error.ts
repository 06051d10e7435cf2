import { ShoalError } from '../errors.ts'

/**
 * An error that maps to an HTTP answer: the status, a stable code and a message for
 * the client. Anything else thrown by a handler becomes a 500 with no internals shown.
 */
export class HttpError extends ShoalError {
  override name = 'HttpError'
  override readonly code: string
  readonly status: number
  readonly detail?: unknown
  readonly headers: Record<string, string>

  constructor (status: number, code: string, message: string, options: { detail?: unknown, headers?: Record<string, string> } = {}) {
    super(message)
    this.status = status
    this.code = code
    this.detail = options.detail
    this.headers = options.headers ?? {}
  }
}
