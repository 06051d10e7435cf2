import { Agent, interceptors, type Dispatcher } from 'undici'

export interface HttpClientInit {
  /** TCP + TLS connect. @default 10000 ms */
  connectTimeout?: number
  /** Until response headers arrive. @default 30000 ms */
  headersTimeout?: number
  /** Longest silence between two body chunks. @default 30000 ms */
  bodyTimeout?: number
  /** Redirects followed (registries redirect blobs to object storage). @default 5 */
  maxRedirections?: number
  /** Connections kept per origin. @default 32 */
  connections?: number
}

/**
 * The undici dispatcher every outbound HTTP call goes through: bounded connects,
 * header and idle-body timeouts, and redirects followed (credentials are dropped when
 * a redirect leaves the origin).
 */
export function createHttpDispatcher (init: HttpClientInit = {}): Dispatcher {
  return new Agent({
    connect: { timeout: init.connectTimeout ?? 10_000 },
    headersTimeout: init.headersTimeout ?? 30_000,
    bodyTimeout: init.bodyTimeout ?? 30_000,
    connections: init.connections ?? 32
  }).compose(interceptors.redirect({ maxRedirections: init.maxRedirections ?? 5 }))
}
