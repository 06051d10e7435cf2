import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { isIP } from 'node:net'
import { TLSSocket } from 'node:tls'
import { Agent, type Dispatcher } from 'undici'
import { isLoopbackAddress, isRemoteRefusedTarget, parseConnectTarget, PeerAccess, registryName, remotePeerLookup, type ResolveAll, type Target } from './access.ts'
import { DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEADERS_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_KEEP_ALIVE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, MAX_HEADER_SIZE } from './constants.ts'
import { forwardRequest } from './forward.ts'
import { ProxyTargetRefusedError } from '../errors.ts'
import { openTunnel } from './tunnel.ts'
import type { LocalCa } from './local-ca.ts'
import type { ComponentLogger, HostPort, Logger } from '@shoal/core'
import type { Counter } from 'prom-client'
import type { AddressInfo, LookupFunction, Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/** The registries whose traffic the proxy hands to the mirror instead of passing it on. */
export interface InterceptedHosts {
  /** `host` as image references name a registry: `registry.example.com`, `registry.example.com:5000` */
  has (host: string): boolean
}

export interface ProxyServerInit {
  /** Where the proxy listens. Loopback unless the operator says otherwise. */
  listen: HostPort
  /** Networks (CIDRs) whose peers may use the proxy besides loopback. @default [] */
  allow?: readonly string[]
  /** @default 10000 ms ({@link DEFAULT_CONNECT_TIMEOUT}) */
  connectTimeout?: number
  /** @default 300000 ms ({@link DEFAULT_IDLE_TIMEOUT}) */
  idleTimeout?: number
  /** @default 512 ({@link DEFAULT_MAX_CONNECTIONS}) */
  maxConnections?: number
}

export type ProxyRequestKind = 'intercepted' | 'tunnelled' | 'forwarded' | 'refused' | 'bad_request' | 'failed'

export interface ProxyServerComponents {
  logger: ComponentLogger
  /** The daemon's router, the same handler as the mirror listener's: intercepted requests go here with `?ns=<registry>`. */
  mirror: (req: IncomingMessage, res: ServerResponse) => void
  intercepted: InterceptedHosts
  ca: Pick<LocalCa, 'contextFor'>
  /** Proxy requests and CONNECTs, by what became of them. */
  requests?: Counter<'kind'>
  /**
   * For forwarded requests (other hosts' plain HTTP, and writes such as a push to an
   * intercepted registry). @default an undici Agent with `connectTimeout` and `idleTimeout`
   */
  dispatcher?: Dispatcher
  /** Resolves target names for remote peers, whose targets are checked after resolution. @default dns.lookup */
  resolve?: ResolveAll
}

/**
 * The HTTP(S) proxy an unmodified dockerd is started with (`HTTPS_PROXY`): CONNECTs to
 * the registries in `intercepted` are terminated with a certificate from the local CA
 * and their requests served by the mirror (blobs through the swarm); every other
 * CONNECT is a plain TCP tunnel, and plain-HTTP requests for other hosts are forwarded.
 * Only loopback peers (and `allow`) may use it: never an open relay.
 */
export class ProxyServer {
  private readonly components: ProxyServerComponents
  private readonly log: Logger
  private readonly access: PeerAccess
  private readonly connectTimeout: number
  private readonly idleTimeout: number
  private readonly outer: Server
  // serves the decrypted requests of terminated CONNECTs; never listens itself
  private readonly inner: Server
  private readonly names = new WeakMap<Duplex, string>()
  // tunnels and terminated CONNECTs, closed on stop
  private readonly tunnels = new Set<Duplex>()
  private readonly dispatcher: Dispatcher
  private readonly ownsDispatcher: boolean
  /** For remote peers' forwarded requests: connects only to addresses checked not host-local. */
  private readonly remoteDispatcher: Dispatcher
  private readonly remoteLookup: LookupFunction
  private readonly controller = new AbortController()
  private readonly init: ProxyServerInit
  private bound?: AddressInfo

  constructor (components: ProxyServerComponents, init: ProxyServerInit) {
    this.components = components
    this.init = init
    this.log = components.logger.forComponent('shoal:dfget:proxy')
    this.access = new PeerAccess(init.allow)
    this.connectTimeout = init.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT
    this.idleTimeout = init.idleTimeout ?? DEFAULT_IDLE_TIMEOUT
    this.ownsDispatcher = components.dispatcher == null
    this.dispatcher = components.dispatcher ?? new Agent({ connect: { timeout: this.connectTimeout }, headersTimeout: this.idleTimeout, bodyTimeout: this.idleTimeout, connections: 64 })
    this.remoteLookup = remotePeerLookup(components.resolve)
    this.remoteDispatcher = new Agent({ connect: { timeout: this.connectTimeout, lookup: this.remoteLookup }, headersTimeout: this.idleTimeout, bodyTimeout: this.idleTimeout, connections: 64 })
    // requestTimeout 0: a tunnel or a long blob is no slow request; idleTimeout closes silent ones
    const serverOptions = { headersTimeout: DEFAULT_HEADERS_TIMEOUT, requestTimeout: 0, keepAliveTimeout: DEFAULT_KEEP_ALIVE_TIMEOUT, maxHeaderSize: MAX_HEADER_SIZE }
    this.outer = createServer(serverOptions, (req, res) => { this.onRequest(req, res) })
    this.outer.maxConnections = init.maxConnections ?? DEFAULT_MAX_CONNECTIONS
    this.outer.timeout = this.idleTimeout
    this.outer.on('connection', (socket: Socket) => { this.onConnection(socket) })
    this.outer.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => { this.onConnect(req, socket, head) })
    this.outer.on('clientError', (err, socket) => { this.badRequest(socket, err.message) })
    this.inner = createServer(serverOptions, (req, res) => { this.onInterceptedRequest(req, res) })
    this.inner.timeout = this.idleTimeout
    this.inner.on('clientError', (_err, socket) => { socket.destroy() })
  }

  async start (): Promise<void> {
    this.outer.listen(this.init.listen.port, this.init.listen.host)
    await once(this.outer, 'listening')
    this.bound = this.outer.address() as AddressInfo
    this.log.info({ url: this.url, allow: this.init.allow ?? [] }, 'proxy listening')
    if (!isLoopbackAddress(this.bound.address) && (this.init.allow ?? []).length === 0) {
      this.log.warn({ url: this.url }, 'the proxy listens beyond loopback but serves loopback peers only: give --proxy-allow the networks it is for')
    }
  }

  async stop (): Promise<void> {
    this.controller.abort(new Error('proxy stopping'))
    for (const tunnel of this.tunnels) {
      tunnel.destroy()
    }
    this.inner.closeAllConnections()
    this.outer.closeAllConnections()
    if (this.outer.listening) {
      await new Promise(resolve => this.outer.close(resolve))
    }
    if (this.ownsDispatcher) {
      await this.dispatcher.close()
    }
    await this.remoteDispatcher.close()
  }

  /** `http://host:port` as bound: what HTTPS_PROXY is set to. */
  get url (): string {
    if (this.bound == null) {
      throw new Error('proxy is not started')
    }
    const host = this.bound.family === 'IPv6' ? `[${this.bound.address}]` : this.bound.address
    return `http://${host}:${this.bound.port}`
  }

  /** Refuses peers that are neither loopback nor in `allow`, before reading a byte. */
  private onConnection (socket: Duplex & { remoteAddress?: string }): void {
    if (this.access.allows(socket.remoteAddress)) {
      return
    }
    this.components.requests?.inc({ kind: 'refused' })
    // debug, not warn: a scanner must not fill the log; shoal_dfget_proxy_requests_total{kind="refused"} counts them
    this.log.debug({ peer: socket.remoteAddress }, 'refused a proxy connection from a peer outside loopback and --proxy-allow')
    const body = 'this proxy serves loopback peers (and --proxy-allow networks) only\n'
    socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`)
    socket.on('error', () => {})
    // the server must not parse what such a peer sends
    socket.pause()
  }

  private count (kind: ProxyRequestKind): void {
    this.components.requests?.inc({ kind })
  }

  private badRequest (socket: Duplex, message: string, status = '400 Bad Request'): void {
    this.count(status.startsWith('400') ? 'bad_request' : 'failed')
    if (socket.writable) {
      const body = `${message}\n`
      socket.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
    } else {
      socket.destroy()
    }
  }

  /**
   * A remote peer (with --proxy-allow) must not reach this host's own loopback services
   * or link-local addresses through the proxy. This checks the target's text (IP
   * literals, however written); names are checked once resolved (see {@link remotePeerLookup}).
   */
  private refusedTarget (peer: string | undefined, target: Target): boolean {
    return !isLoopbackAddress(peer) && isRemoteRefusedTarget(target.host)
  }

  private onConnect (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err) => { this.log.debug({ err }, 'proxy client connection failed') })
    const target = parseConnectTarget(req.url ?? '')
    if (target == null) {
      this.badRequest(socket, `bad CONNECT target ${JSON.stringify((req.url ?? '').slice(0, 300))}: expected host:port`)
      return
    }
    if (this.refusedTarget(req.socket.remoteAddress, target)) {
      this.badRequest(socket, 'loopback and link-local targets are for loopback peers only', '403 Forbidden')
      return
    }
    const name = registryName(target, 443)
    if (!this.components.intercepted.has(name)) {
      this.count('tunnelled')
      this.tunnels.add(socket)
      openTunnel(socket, head, target, {
        ...(isLoopbackAddress(req.socket.remoteAddress) ? {} : { lookup: this.remoteLookup }),
        connectTimeout: this.connectTimeout,
        idleTimeout: this.idleTimeout,
        onClose: (err) => {
          this.tunnels.delete(socket)
          if (err != null) {
            this.log.debug({ err, target: name }, 'tunnel closed')
          }
        }
      })
      return
    }
    this.count('intercepted')
    // the leaf names the host the client asked for: an IP (no SNI then) or a DNS name
    this.components.ca.contextFor(target.host)
      .then(secureContext => {
        if (socket.destroyed) {
          return
        }
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n')
        if (head.byteLength > 0) {
          socket.unshift(head)
        }
        const tls = new TLSSocket(socket as Socket, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] })
        tls.on('error', (err) => {
          this.log.debug({ err, registry: name }, 'TLS with a proxy client failed (does it trust the proxy CA?)')
          tls.destroy()
        })
        this.names.set(tls, name)
        this.tunnels.add(tls)
        tls.once('close', () => { this.tunnels.delete(tls) })
        this.inner.emit('connection', tls)
      })
      .catch((err: unknown) => {
        this.log.error({ err, registry: name }, 'cannot mint a certificate')
        this.badRequest(socket, 'cannot mint a certificate for this host', '502 Bad Gateway')
      })
  }

  /** A decrypted request on a terminated CONNECT: the mirror serves it as if asked with `?ns=<registry>`. */
  private onInterceptedRequest (req: IncomingMessage, res: ServerResponse): void {
    const name = this.names.get(req.socket)
    if (name == null) {
      res.destroy()
      return
    }
    this.toMirror(req, res, name, req.url ?? '/', 'https')
  }

  private toMirror (req: IncomingMessage, res: ServerResponse, name: string, target: string, scheme: 'http' | 'https'): void {
    let url: URL
    try {
      url = new URL(target, 'http://localhost')
    } catch {
      sendRegistryError(res, 400, 'BAD_REQUEST', 'malformed request target')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      // the mirror is read-only: a push goes to the registry the client named, as it
      // would without the proxy
      this.forward(req, res, new URL(`${scheme}://${name}${url.pathname}${url.search}`), name)
      return
    }
    // only the registry API: the daemon's own API and metrics are not the registry's
    if (url.pathname !== '/v2' && !url.pathname.startsWith('/v2/')) {
      sendRegistryError(res, 404, 'NOT_FOUND', `the Shoal proxy serves only the registry API (/v2/) of ${name}`)
      return
    }
    url.searchParams.set('ns', name)
    req.url = `${url.pathname}${url.search}`
    this.components.mirror(req, res)
  }

  /** A plain-HTTP proxy request (absolute-form): the mirror for intercepted registries, forwarded otherwise. */
  private onRequest (req: IncomingMessage, res: ServerResponse): void {
    const raw = req.url ?? ''
    if (!/^http:\/\//i.test(raw)) {
      this.count('bad_request')
      const hint = /^https:\/\//i.test(raw) ? 'https:// targets go through CONNECT' : 'this is a proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port'
      sendText(res, 400, hint)
      return
    }
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      this.count('bad_request')
      sendText(res, 400, 'malformed request target')
      return
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase()
    if (host === '' || (isIP(host) === 0 && parseConnectTarget(`${host}:80`) == null)) {
      this.count('bad_request')
      sendText(res, 400, `bad target host ${JSON.stringify(url.hostname.slice(0, 300))}`)
      return
    }
    const target = { host, port: url.port === '' ? 80 : Number(url.port) }
    if (this.refusedTarget(req.socket.remoteAddress, target)) {
      this.count('refused')
      sendText(res, 403, 'loopback and link-local targets are for loopback peers only')
      return
    }
    const name = registryName(target, 80)
    if (this.components.intercepted.has(name)) {
      this.count('intercepted')
      this.toMirror(req, res, name, `${url.pathname}${url.search}`, 'http')
      return
    }
    this.forward(req, res, url, name)
  }

  private forward (req: IncomingMessage, res: ServerResponse, url: URL, name: string): void {
    this.count('forwarded')
    const controller = new AbortController()
    res.once('close', () => { if (!res.writableFinished) { controller.abort(new Error('client went away')) } })
    const dispatcher = isLoopbackAddress(req.socket.remoteAddress) ? this.dispatcher : this.remoteDispatcher
    forwardRequest(req, res, url, { dispatcher, signal: AbortSignal.any([controller.signal, this.controller.signal]) })
      .catch((err: unknown) => {
        this.log.debug({ err, target: name }, 'forwarding failed')
        if (res.headersSent) {
          res.destroy()
          return
        }
        if (isTargetRefusal(err)) {
          this.count('refused')
          sendText(res, 403, (err as Error).message)
          return
        }
        this.count('failed')
        sendText(res, 502, `cannot reach ${name}: ${(err as Error).message}`)
      })
  }
}

/** Whether a forwarding failure is the remote-peer lookup's refusal (undici may wrap it). */
function isTargetRefusal (err: unknown): boolean {
  // bounded: a cause chain of at most a few links
  for (let e = err, i = 0; e != null && i < 5; e = (e as Error).cause, i++) {
    if (e instanceof ProxyTargetRefusedError) {
      return true
    }
  }
  return false
}

function sendText (res: ServerResponse, status: number, message: string): void {
  const body = `${message}\n`
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

function sendRegistryError (res: ServerResponse, status: number, code: string, message: string): void {
  const body = JSON.stringify({ errors: [{ code, message, detail: null }] })
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}
