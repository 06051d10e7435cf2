import { isIP } from 'node:net'
import { Readable } from 'node:stream'
import { Agent, request, type Dispatcher } from 'undici'
import { InvalidConfigError, SourceRefusedError, SourceTooLargeError, SourceUnavailableError } from '../errors.ts'
import { raceSignal } from '../race-signal.ts'
import { createGuardedLookup, defaultResolve, isPublicAddress, type ResolveAll } from './address.ts'
import { bareHostname, effectivePort, hostLabel, SourceAllowlist } from './allowlist.ts'
import {
  CROSS_ORIGIN_HEADERS, DEFAULT_BODY_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECTIONS, DEFAULT_HEADERS_TIMEOUT,
  DEFAULT_MAX_CONCURRENT_FETCHES, DEFAULT_MAX_REDIRECTS, DEFAULT_MAX_SOURCE_BYTES, DEFAULT_RESPONSE_TIMEOUT,
  DEFAULT_SLOT_TIMEOUT, DEFAULT_STOP_TIMEOUT, DUMP_LIMIT, HOP_BY_HOP_HEADERS
} from './constants.ts'
import { drainBody, FetchSlots, guardBody } from './guarded-body.ts'
import type { ComponentLogger, Logger } from '../logger.ts'

export interface SourceClientInit {
  /**
   * The configured upstreams, the only hosts a fetch may name: origins
   * (`https://host[:port]`, that scheme only) or hosts (`host[:port]`, http or https;
   * without a port, the scheme's default). They may be private addresses.
   * @default [] (every fetch is refused)
   */
  allow?: readonly string[]
  /** Follow redirects to hosts that are not upstreams even when they resolve to private addresses. @default false */
  allowPrivateRedirects?: boolean
  /** @default 5 ({@link DEFAULT_MAX_REDIRECTS}) */
  maxRedirects?: number
  /** A larger Content-Length is refused, a longer body cut off. @default 64 GiB ({@link DEFAULT_MAX_SOURCE_BYTES}) */
  maxSourceBytes?: number
  /** Source responses open at once; more callers wait. @default 32 ({@link DEFAULT_MAX_CONCURRENT_FETCHES}) */
  maxConcurrentFetches?: number
  /** TCP + TLS connect, own agent only. @default 10000 ms */
  connectTimeout?: number
  /** Per hop, until response headers, own agent only. @default 30000 ms */
  headersTimeout?: number
  /** Longest silence between body chunks, own agent only. @default 30000 ms */
  bodyTimeout?: number
  /** Default for {@link SourceFetchOptions.timeout}. @default 60000 ms */
  responseTimeout?: number
  /** Longest wait for a free slot. @default 300000 ms */
  slotTimeout?: number
  /**
   * TLS settings of particular hosts (a registry with its own CA, or one whose
   * certificate is not checked): each gets its own agent. Own agent only.
   * @default [] (the system's CAs for every host)
   */
  tls?: readonly SourceTls[]
}

/** How the client checks one host's certificate. */
export interface SourceTls {
  /** `host[:port]`; without a port, every port of that host. */
  host: string
  /** PEM certificates trusted for this host instead of the system's CAs. */
  ca?: string
  /** Do not check the host's certificate at all (a test registry): anyone on the path can read and change the traffic. @default false */
  insecureSkipVerify?: boolean
}

export interface SourceClientComponents {
  /**
   * Used as is instead of the client's own agent, which checks DNS answers at connect
   * time (rebinding). Its own redirect handling is turned off per request.
   */
  dispatcher?: Dispatcher
  logger: ComponentLogger
  /** How host names are resolved for the public-address checks. @default dns.lookup */
  resolve?: ResolveAll
}

export interface SourceFetchOptions {
  /** @default 'GET' */
  method?: 'GET' | 'HEAD'
  /** Sent to the URL named (credentials only to its origin); hop-by-hop headers are dropped. */
  headers?: Record<string, string>
  signal?: AbortSignal
  /**
   * 'follow' (up to maxRedirects, each target checked) or 'manual': a 3xx is the
   * answer, with its `location` header, and nothing else is requested.
   * @default 'follow'
   */
  redirect?: 'follow' | 'manual'
  /** Longest until the final response headers (not the body), after a slot is free. @default responseTimeout */
  timeout?: number
}

export interface SourceResponse {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  /**
   * The body, cut off with an error past its Content-Length or maxSourceBytes. Read it
   * to its end or destroy it: the fetch holds one of the client's slots until then.
   * Empty for a HEAD, whose slot is freed before the response is returned.
   */
  body: Readable
  /** The URL that answered, after redirects. */
  url: string
  /** Reads up to 64 KiB of the body (so the connection is reused), drops the rest and frees the slot. */
  dump(): Promise<void>
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const BAD_HEADER_VALUE = /[\r\n\0]/

/** Origin and path, never the query: object storage puts signatures there. */
const describe = (url: URL): string => `${url.origin}${url.pathname}`

/**
 * The one way Shoal fetches from a source (registry, object storage, file server), for
 * the supernode and the daemon alike. It refuses, before connecting, any URL whose
 * origin is not a configured upstream; follows redirects itself, checking each target:
 * an upstream, or a host whose every address is public (no loopback, RFC 1918,
 * link-local metadata...), checked again at connect time against DNS rebinding; sends
 * credentials only to the origin the caller named; and caps sizes and open responses.
 *
 * @example
 *
 * ```typescript
 * const source = new SourceClient({ logger }, { allow: ['https://registry-1.docker.io'] })
 * const res = await source.fetch(url, { headers: { authorization }, signal })
 * // HEAD with redirect: 'manual': a 2xx or 3xx means the credentials may read the blob
 * const head = await source.fetch(url, { method: 'HEAD', redirect: 'manual', headers: { authorization } })
 * await head.dump()
 * ```
 */
export class SourceClient {
  private readonly log: Logger
  private readonly allowlist: SourceAllowlist
  private readonly dispatcher: Dispatcher
  /** Agents of the hosts with their own TLS settings, by `host[:port]` as configured. */
  private readonly tlsDispatchers = new Map<string, Dispatcher>()
  private readonly ownsDispatcher: boolean
  private readonly resolve: ResolveAll | undefined
  private readonly slots: FetchSlots
  private readonly allowPrivateRedirects: boolean
  private readonly maxRedirects: number
  readonly maxSourceBytes: number
  private readonly responseTimeout: number
  private readonly slotTimeout: number

  /** @throws {InvalidConfigError} for an allow entry that is not an origin or host, or a bad limit */
  constructor (components: SourceClientComponents, init: SourceClientInit = {}) {
    this.log = components.logger.forComponent('shoal:source')
    this.allowlist = new SourceAllowlist(init.allow ?? [])
    this.allowPrivateRedirects = init.allowPrivateRedirects ?? false
    this.maxRedirects = positive('maxRedirects', init.maxRedirects ?? DEFAULT_MAX_REDIRECTS, true)
    this.maxSourceBytes = positive('maxSourceBytes', init.maxSourceBytes ?? DEFAULT_MAX_SOURCE_BYTES)
    this.slots = new FetchSlots(positive('maxConcurrentFetches', init.maxConcurrentFetches ?? DEFAULT_MAX_CONCURRENT_FETCHES))
    this.responseTimeout = init.responseTimeout ?? DEFAULT_RESPONSE_TIMEOUT
    this.slotTimeout = init.slotTimeout ?? DEFAULT_SLOT_TIMEOUT
    this.resolve = components.resolve
    this.ownsDispatcher = components.dispatcher == null
    const agent = (tls: Pick<SourceTls, 'ca' | 'insecureSkipVerify'> = {}): Agent => new Agent({
      connect: {
        timeout: init.connectTimeout ?? DEFAULT_CONNECT_TIMEOUT,
        ...(tls.ca != null ? { ca: tls.ca } : {}),
        ...(tls.insecureSkipVerify === true ? { rejectUnauthorized: false } : {}),
        // with private redirects allowed there is nothing to guard
        ...(this.allowPrivateRedirects
          ? {}
          : { lookup: createGuardedLookup({ trusted: h => this.allowlist.trustsHostname(h), ...(this.resolve != null ? { resolve: this.resolve } : {}) }) })
      },
      headersTimeout: init.headersTimeout ?? DEFAULT_HEADERS_TIMEOUT,
      bodyTimeout: init.bodyTimeout ?? DEFAULT_BODY_TIMEOUT,
      connections: DEFAULT_CONNECTIONS
    })
    this.dispatcher = components.dispatcher ?? agent()
    if (components.dispatcher == null) {
      for (const entry of init.tls ?? []) {
        const host = tlsHostKey(entry.host)
        if (this.tlsDispatchers.has(host)) {
          throw new InvalidConfigError(`TLS settings for ${entry.host} given twice`)
        }
        this.tlsDispatchers.set(host, agent(entry))
      }
    }
  }

  /** Fetches open right now (responses whose body has not ended). */
  get openFetches (): number {
    return this.slots.inUse
  }

  /**
   * Closes the client's own agent (a dispatcher passed in belongs to the caller): lets
   * open responses finish until `signal` aborts (5 s by default), then cuts them.
   */
  async stop (options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!this.ownsDispatcher) {
      return
    }
    const dispatchers = [this.dispatcher, ...this.tlsDispatchers.values()]
    const closing = Promise.all(dispatchers.map(async d => { await d.close() }))
    closing.catch(() => {}) // settled either way below; a destroy may reject it
    try {
      await raceSignal(closing, options.signal ?? AbortSignal.timeout(DEFAULT_STOP_TIMEOUT))
    } catch {
      await Promise.all(dispatchers.map(async d => { await d.destroy() }))
    }
  }

  /**
   * Whether a fetch of this URL would be started: an http(s) URL whose origin is a
   * configured upstream. Connects to nothing.
   *
   * @throws {SourceRefusedError} naming the host and the flag that would allow it
   */
  check (url: string | URL): URL {
    let parsed: URL
    try {
      parsed = new URL(url)
    } catch {
      throw new SourceRefusedError('', `refused to fetch ${JSON.stringify(String(url).slice(0, 256))}: not a URL`)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new SourceRefusedError(parsed.host, `refused to fetch from ${parsed.protocol}//${parsed.host}: only http and https sources are supported`)
    }
    if (!this.allowlist.allows(parsed)) {
      const label = hostLabel(parsed)
      const none = this.allowlist.size === 0 ? 'no source is allowed; ' : ''
      throw new SourceRefusedError(label, `refused to fetch from ${parsed.protocol}//${parsed.host}: ${none}${label} is not an allowed source (allow it with --allow-source ${label})`)
    }
    return parsed
  }

  /**
   * Fetches a source. A URL that is not an upstream is refused before any connection.
   *
   * @throws {SourceRefusedError} not an upstream, or a redirect to a private address
   * @throws {SourceTooLargeError} a GET answered with a Content-Length over maxSourceBytes (no body read)
   * @throws {SourceUnavailableError} unreachable, too many redirects, no answer or no slot in time
   */
  async fetch (url: string | URL, options: SourceFetchOptions = {}): Promise<SourceResponse> {
    const method = options.method ?? 'GET'
    const named = this.check(url)
    const headers = requestHeaders(options.headers ?? {}, named)
    const callerSignal = options.signal

    const release = await this.slots.acquire(AbortSignal.any([
      ...(callerSignal != null ? [callerSignal] : []),
      AbortSignal.timeout(this.slotTimeout)
    ])).catch((err: unknown) => {
      callerSignal?.throwIfAborted()
      throw new SourceUnavailableError(`no free source slot in ${this.slotTimeout} ms (${this.slots.inUse} fetches open; --max-source-fetches): ${(err as Error).message}`)
    })

    // one controller for the whole exchange: the caller's signal aborts it all (body
    // too), the timeout only the part until the final headers
    const controller = new AbortController()
    const onAbort = (): void => { controller.abort(callerSignal?.reason) }
    callerSignal?.addEventListener('abort', onAbort, { once: true })
    if (callerSignal?.aborted === true) {
      onAbort() // aborted while the slot was being handed over: no event comes any more
    }
    const timeout = options.timeout ?? this.responseTimeout
    const timer = setTimeout(() => { controller.abort(new SourceUnavailableError(`no answer from ${named.host} in ${timeout} ms`)) }, timeout)
    const cleanup = (): void => {
      clearTimeout(timer)
      callerSignal?.removeEventListener('abort', onAbort)
      release()
    }

    try {
      let current = named
      // bounded: each pass follows one redirect, at most maxRedirects of them
      for (let hop = 0; ; hop++) {
        const sameOrigin = current.origin === named.origin
        const res = await this.send(current, method, sameOrigin ? headers : withoutCredentials(headers), controller.signal)
        const location = res.headers.location
        if (options.redirect !== 'manual' && REDIRECT_STATUSES.has(res.statusCode) && typeof location === 'string') {
          await res.body.dump({ limit: DUMP_LIMIT }).catch(() => {})
          if (hop >= this.maxRedirects) {
            throw new SourceUnavailableError(`${describe(named)} redirected more than ${this.maxRedirects} times`)
          }
          const next = redirectTarget(location, current)
          await this.checkRedirect(current, next, controller.signal)
          this.log.debug({ from: describe(current), to: describe(next), credentials: next.origin === named.origin }, 'following redirect')
          current = next
          continue
        }

        clearTimeout(timer)
        const declared = headerNumber(res.headers['content-length'])
        // only a GET is refused for its size: a HEAD only asks (an authorization check of a large blob must pass)
        if (method === 'GET' && declared != null && declared > this.maxSourceBytes) {
          res.body.destroy()
          throw new SourceTooLargeError(this.maxSourceBytes, `${describe(current)} is ${declared} bytes, more than the ${this.maxSourceBytes} accepted (--max-source-bytes)`)
        }
        if (method === 'HEAD') {
          // nothing to read: the slot is freed now, so a HEAD (an authorization check)
          // needs no cleanup from its caller
          await res.body.dump({ limit: DUMP_LIMIT }).catch(() => {})
          cleanup()
          return { statusCode: res.statusCode, headers: res.headers, body: Readable.from([]), url: current.href, dump: async () => {} }
        }
        const body = guardBody(res.body, {
          declaredLength: declared,
          maxBytes: this.maxSourceBytes,
          label: describe(current),
          onClose: cleanup
        })
        return {
          statusCode: res.statusCode,
          headers: res.headers,
          body,
          url: current.href,
          dump: async () => { await drainBody(body, DUMP_LIMIT) }
        }
      }
    } catch (err) {
      cleanup()
      throw err
    }
  }

  private async send (url: URL, method: 'GET' | 'HEAD', headers: Record<string, string>, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    // maxRedirections 0: a dispatcher passed in with a redirect interceptor must not
    // follow redirects behind this client's back
    const options = Object.assign({ method, headers, signal, dispatcher: this.dispatcherFor(url) }, { maxRedirections: 0 })
    try {
      return await request(url, options)
    } catch (err) {
      const refusal = findRefusal(err)
      if (refusal != null) {
        throw refusal
      }
      if (signal.aborted) {
        throw signal.reason instanceof Error ? signal.reason : new SourceUnavailableError(`fetch of ${describe(url)} aborted`)
      }
      throw new SourceUnavailableError(`cannot fetch ${describe(url)}: ${(err as Error).message}`)
    }
  }

  /**
   * The agent with this host's TLS settings: `host:port` first, then `host`, else the
   * default (which refuses, at connect time, a name that is no upstream and resolves to
   * a private address). For requests the client cannot make itself, such as a registry's
   * token realm on another host (auth.docker.io), which is no configured source.
   */
  dispatcherFor (url: URL): Dispatcher {
    if (this.tlsDispatchers.size === 0) {
      return this.dispatcher
    }
    const host = bareHostname(url).toLowerCase()
    return this.tlsDispatchers.get(`${host}:${effectivePort(url)}`) ?? this.tlsDispatchers.get(host) ?? this.dispatcher
  }

  /** A redirect target is fine if it is an upstream, or every address it has is public. */
  private async checkRedirect (from: URL, to: URL, signal: AbortSignal): Promise<void> {
    const label = hostLabel(to)
    if (to.protocol !== 'http:' && to.protocol !== 'https:') {
      throw new SourceRefusedError(label, `redirect from ${from.host} to ${to.protocol} refused: only http and https are followed`)
    }
    if (this.allowlist.allows(to) || this.allowPrivateRedirects) {
      return
    }
    const host = bareHostname(to)
    let addresses: string[]
    if (isIP(host) !== 0) {
      addresses = [host]
    } else {
      try {
        addresses = await raceSignal(this.lookupAll(host), signal)
      } catch (err) {
        if (signal.aborted) {
          throw signal.reason
        }
        throw new SourceUnavailableError(`redirect from ${from.host} to ${label}: cannot resolve ${host}: ${(err as Error).message}`)
      }
    }
    const bad = addresses.find(a => !isPublicAddress(a))
    if (bad != null || addresses.length === 0) {
      this.log.warn({ from: from.host, to: label, address: bad }, 'redirect to a private address refused')
      throw new SourceRefusedError(label, `redirect from ${from.host} to ${label} refused: ${host} is ${bad != null ? `${bad}, ` : ''}not a public address (allow it with --allow-source ${label} or --allow-private-redirects)`)
    }
  }

  private async lookupAll (host: string): Promise<string[]> {
    const resolve = this.resolve ?? defaultResolve
    return new Promise((resolvePromise, reject) => {
      resolve(host, { all: true }, (err, addresses) => {
        if (err != null) {
          reject(err)
        } else {
          resolvePromise(addresses.map(a => a.address))
        }
      })
    })
  }
}

/** `host[:port]` as the key {@link SourceClient.dispatcherFor} looks up. */
function tlsHostKey (entry: string): string {
  let url: URL
  try {
    url = new URL(`https://${entry.trim()}`)
  } catch {
    throw new InvalidConfigError(`invalid TLS host ${JSON.stringify(entry)}: expected host or host:port, such as registry.example.com:5000`)
  }
  if (url.username !== '' || url.password !== '' || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new InvalidConfigError(`invalid TLS host ${JSON.stringify(entry)}: expected host or host:port, without scheme or path`)
  }
  const host = bareHostname(url).toLowerCase()
  return url.port !== '' || /:443$/.test(entry.trim()) ? `${host}:${effectivePort(url)}` : host
}

function positive (name: string, value: number, zeroOk = false): number {
  if (!Number.isSafeInteger(value) || value < (zeroOk ? 0 : 1)) {
    throw new InvalidConfigError(`${name} must be a ${zeroOk ? 'non-negative' : 'positive'} integer, not ${value}`)
  }
  return value
}

/** The caller's headers minus hop-by-hop and proxy ones, each checked (no header injection). */
function requestHeaders (input: Record<string, string>, url: URL): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [rawName, value] of Object.entries(input)) {
    const name = rawName.toLowerCase()
    if (HOP_BY_HOP_HEADERS.has(name) || name.startsWith('proxy-')) {
      continue
    }
    if (!HEADER_NAME.test(name) || typeof value !== 'string' || BAD_HEADER_VALUE.test(value)) {
      throw new SourceRefusedError(url.host, `refused to fetch from ${url.host}: header ${JSON.stringify(rawName.slice(0, 64))} is not a valid HTTP header`)
    }
    out[name] = value
  }
  return out
}

function withoutCredentials (headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => CROSS_ORIGIN_HEADERS.has(name)))
}

function redirectTarget (location: string, base: URL): URL {
  let next: URL
  try {
    next = new URL(location, base)
  } catch {
    throw new SourceUnavailableError(`${base.host} redirected to an invalid location ${JSON.stringify(location.slice(0, 256))}`)
  }
  next.hash = ''
  return next
}

function headerNumber (value: string | string[] | undefined): number | null {
  return typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : null
}

/** The connect-time lookup's refusal, however the socket layer wrapped it. */
function findRefusal (err: unknown): SourceRefusedError | undefined {
  // bounded: a cause chain, or an AggregateError's errors, a few levels deep at most
  let e: unknown = err
  for (let depth = 0; depth < 5 && e != null; depth++) {
    if (e instanceof SourceRefusedError) {
      return e
    }
    if (e instanceof AggregateError) {
      const inner = e.errors.find(x => x instanceof SourceRefusedError) as SourceRefusedError | undefined
      if (inner != null) {
        return inner
      }
    }
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}
