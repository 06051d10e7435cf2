import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { z } from 'zod'
import { createHostGuard } from './host-guard.ts'
import { HttpError } from './http-error.ts'
import type { Logger } from '../logger.ts'
import type { AddressInfo } from 'node:net'

export interface RouteContext {
  req: IncomingMessage
  res: ServerResponse
  url: URL
  /** Named groups of the route's pattern */
  params: Record<string, string>
  /** Aborted when the client goes away or the server stops */
  signal: AbortSignal
}

export interface Route {
  methods: readonly string[]
  pattern: RegExp
  handler: (ctx: RouteContext) => Promise<void>
}

export interface RouterOptions {
  log: Logger
  /** Turns an error into the body this API speaks. @default `{ error: { code, message } }` */
  errorBody?: (err: HttpError) => unknown
  /** Aborts every in-flight handler, on shutdown. */
  signal?: AbortSignal
}

const defaultErrorBody = (err: HttpError): unknown => ({ error: { code: err.code, message: err.message, ...(err.detail != null ? { detail: err.detail } : {}) } })

/**
 * A deliberately small router: the APIs have a handful of routes each, and owning the
 * request loop keeps streaming, abort and error handling explicit.
 */
export function createRouter (routes: readonly Route[], options: RouterOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const errorBody = options.errorBody ?? defaultErrorBody

  return (req, res) => {
    const controller = new AbortController()
    const onClose = (): void => {
      if (!res.writableFinished) {
        controller.abort(new Error('client went away'))
      }
    }
    res.once('close', onClose)
    const signal = options.signal == null ? controller.signal : AbortSignal.any([controller.signal, options.signal])

    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      sendError(res, new HttpError(400, 'BAD_REQUEST', 'malformed request target'), errorBody)
      return
    }

    let pathMatched = false
    for (const route of routes) {
      const match = route.pattern.exec(url.pathname)
      if (match == null) {
        continue
      }
      pathMatched = true
      if (!route.methods.includes(req.method ?? '')) {
        continue
      }

      route.handler({ req, res, url, params: { ...match.groups }, signal })
        .catch((err: unknown) => {
          if (err instanceof HttpError) {
            options.log.debug({ status: err.status, code: err.code, path: url.pathname }, err.message)
          } else if (!signal.aborted) {
            options.log.error({ err, method: req.method, path: url.pathname }, 'request failed')
          }
          sendError(res, err, errorBody)
        })
      return
    }

    sendError(res, pathMatched
      ? new HttpError(405, 'UNSUPPORTED', `method ${req.method ?? ''} is not allowed on ${url.pathname}`)
      : new HttpError(404, 'NOT_FOUND', `no route for ${url.pathname}`), errorBody)
  }
}

/**
 * Answers with an error unless the response has already started, in which case the
 * connection is cut so the client cannot mistake a partial body for a whole one.
 */
export function sendError (res: ServerResponse, err: unknown, errorBody: (err: HttpError) => unknown = defaultErrorBody): void {
  if (res.headersSent) {
    res.destroy(err instanceof Error ? err : undefined)
    return
  }
  const httpErr = err instanceof HttpError ? err : new HttpError(500, 'INTERNAL', 'internal error')
  sendJson(res, httpErr.status, errorBody(httpErr), httpErr.headers)
}

export function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text)
  })
  res.end(text)
}

export interface ReadJsonOptions {
  /** Largest body accepted. @default 1 MiB */
  limit?: number
}

/**
 * Reads and validates a JSON body.
 *
 * @throws {HttpError} 413 when too large, 415 when not JSON, 400 when malformed or invalid
 */
export async function readJson<T> (req: IncomingMessage, schema: z.ZodType<T>, options: ReadJsonOptions = {}): Promise<T> {
  const limit = options.limit ?? 1024 * 1024
  const type = req.headers['content-type'] ?? ''
  if (!type.startsWith('application/json')) {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'request body must be application/json')
  }
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > limit) {
    throw new HttpError(413, 'TOO_LARGE', `request body of ${declared} bytes is over the ${limit} byte limit`)
  }

  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength
    if (size > limit) {
      throw new HttpError(413, 'TOO_LARGE', `request body is over the ${limit} byte limit`)
    }
    chunks.push(chunk)
  }

  let json: unknown
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new HttpError(400, 'BAD_REQUEST', 'request body is not valid JSON')
  }

  const parsed = schema.safeParse(json)
  if (!parsed.success) {
    throw new HttpError(400, 'BAD_REQUEST', `invalid request: ${formatIssues(parsed.error)}`)
  }
  return parsed.data
}

/** One line naming each problem and where it is, for error messages. */
export function formatIssues (error: z.ZodError, name: (path: PropertyKey[]) => string = (p) => p.join('.')): string {
  return error.issues.map(issue => {
    const where = name(issue.path)
    return where === '' ? issue.message : `${where}: ${issue.message}`
  }).join('; ')
}

export interface HostPort {
  host: string
  port: number
}

export interface HttpServer {
  server: Server
  /** `http://host:port` as actually bound (the port is real when 0 was asked for) */
  url: string
  address: AddressInfo
  close(): Promise<void>
}

export interface HttpServerOptions {
  /** Connections open at once; the OS hands more to the server, which closes them at once. @default 1024 */
  maxConnections?: number
  /** A connection with no traffic either way for this long is closed: a client that stopped reading a response is cut. @default 120000 ms */
  idleTimeout?: number
  /** Until the request headers are in. @default 30000 ms */
  headersTimeout?: number
  /** Until the whole request (headers and body) is in. @default 60000 ms */
  requestTimeout?: number
  /** Largest request head (request line and headers); larger ones get 431. @default 16384 bytes */
  maxHeaderSize?: number
  /**
   * When set, only requests whose Host header names loopback, the listen address (when
   * it is a specific IP) or one of these names are answered; the rest get 403, so a web
   * page that rebinds its DNS name to this host cannot talk to it. @default undefined (any Host)
   */
  allowedHosts?: readonly string[]
  /** How to allow another Host, for the 403 message, such as `start the daemon with --allowed-host <name>`. */
  allowedHostsHint?: string
  /** The body of the 403, in the API's error format. @default `{ error: { code, message } }` */
  errorBody?: (err: HttpError) => unknown
}

/**
 * Starts an HTTP server. Headers, whole requests, idle keep-alive and idle sockets have
 * timeouts; connections and request heads are bounded; request bodies are bounded by
 * each route. Closing waits briefly for in-flight requests, then cuts them.
 */
export async function startHttpServer (listen: HostPort, handler: (req: IncomingMessage, res: ServerResponse) => void, options: HttpServerOptions = {}): Promise<HttpServer> {
  let serve = handler
  if (options.allowedHosts != null) {
    const allowed = createHostGuard({ listenHost: listen.host, allowed: options.allowedHosts })
    const errorBody = options.errorBody ?? defaultErrorBody
    const hint = options.allowedHostsHint ?? 'configure allowedHosts'
    serve = (req, res) => {
      if (allowed(req.headers.host)) {
        handler(req, res)
        return
      }
      const host = JSON.stringify((req.headers.host ?? '').slice(0, 256))
      sendError(res, new HttpError(403, 'DENIED', `requests for Host ${host} are refused: this listener answers only to loopback names and its listen address; to accept this name, ${hint}`), errorBody)
    }
  }
  const server = createServer({
    headersTimeout: options.headersTimeout ?? 30_000,
    requestTimeout: options.requestTimeout ?? 60_000,
    keepAliveTimeout: 30_000,
    maxHeaderSize: options.maxHeaderSize ?? 16_384
  }, serve)
  server.maxConnections = options.maxConnections ?? 1024
  // with no 'timeout' listener, node destroys the idle socket
  server.setTimeout(options.idleTimeout ?? 120_000)
  server.listen(listen.port, listen.host)
  await once(server, 'listening')
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address

  return {
    server,
    address,
    url: `http://${host}:${address.port}`,
    async close () {
      const closed = new Promise<void>(resolve => server.close(() => { resolve() }))
      server.closeIdleConnections()
      const grace = setTimeout(() => server.closeAllConnections(), 2_000)
      await closed
      clearTimeout(grace)
    }
  }
}
