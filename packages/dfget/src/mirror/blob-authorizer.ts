import { raceSignal, SourceRefusedError, type ComponentLogger, type Logger } from '@shoal/core'
import { AuthzCache, authzKey } from './authz-cache.ts'
import { DEFAULT_AUTHZ_CACHE_ENTRIES, DEFAULT_AUTHZ_CACHE_TTL, DEFAULT_AUTHZ_MAX_ERROR_BODY, DEFAULT_AUTHZ_TIMEOUT } from './constants.ts'
import { AuthorizationUnavailableError } from '../errors.ts'
import type { DfgetMetrics } from '../metrics.ts'
import type { ServerResponse } from 'node:http'

/** What a HEAD to the source answered. Redirects are answers, not followed. */
export interface SourceHeadResponse {
  statusCode: number
  headers: Readonly<Record<string, string | string[] | undefined>>
  /** Empty for a HEAD; read only up to a bound. */
  body: AsyncIterable<Uint8Array>
}

/**
 * A HEAD request to the source with the client's headers, redirects not followed: the
 * one thing the authorizer needs from an HTTP client.
 */
export type SourceHead = (url: string, options: { headers: Record<string, string>, signal: AbortSignal }) => Promise<SourceHeadResponse>

export interface BlobAuthorizerInit {
  /** How long an allowed answer is reused; 0 asks every time. @default 60000 ms ({@link DEFAULT_AUTHZ_CACHE_TTL}) */
  cacheTtl?: number
  /** Allowed answers kept. @default 10000 ({@link DEFAULT_AUTHZ_CACHE_ENTRIES}) */
  cacheEntries?: number
  /** Longest one check may take. @default 10000 ms ({@link DEFAULT_AUTHZ_TIMEOUT}) */
  timeout?: number
  /** Largest error body passed back to the client. @default 65536 bytes ({@link DEFAULT_AUTHZ_MAX_ERROR_BODY}) */
  maxErrorBody?: number
}

export interface BlobAuthorizerComponents {
  sourceHead: SourceHead
  metrics: Pick<DfgetMetrics, 'authzChecks'>
  logger: ComponentLogger
}

/** The upstream's "no", to be passed back to the client as it was. */
export interface Denial {
  status: number
  headers: Record<string, string>
  body: Buffer
}

/**
 * Redirects a registry answers an authorized blob request with (to its storage). Never
 * 304: a client's own conditional headers could make it.
 */
const REDIRECTS = new Set([301, 302, 303, 307, 308])

export interface CheckOptions {
  /**
   * Whether a redirect means yes, as it does from a registry's blob endpoint. Not for
   * other URLs: a login proxy answers strangers with a redirect too. @default true
   */
  redirectMeansYes?: boolean
}

/** Response headers of a denial the client needs, for its token exchange. */
const DENIAL_HEADERS = ['www-authenticate', 'docker-distribution-api-version', 'content-type']

/** Registry error codes for statuses, for a denial that came without a body (as HEAD answers do). */
const STATUS_CODES: Record<number, [string, string]> = {
  401: ['UNAUTHORIZED', 'authentication required'],
  403: ['DENIED', 'requested access to the resource is denied'],
  404: ['BLOB_UNKNOWN', 'blob unknown to registry'],
  429: ['TOOMANYREQUESTS', 'too many requests']
}

/**
 * Asks the upstream whether this client may read this content, before any of its bytes
 * leave the daemon, whether they are on disk, on their way for another client, or coming
 * from peers. The question is a HEAD with the client's own credentials; a 2xx is a yes,
 * and so is a redirect from a registry's blob endpoint (registries redirect authorized
 * blob requests to storage; see {@link CheckOptions}); anything else is a no that goes
 * back to the client unchanged so it can do its token exchange.
 */
export class BlobAuthorizer {
  private readonly components: BlobAuthorizerComponents
  private readonly log: Logger
  private readonly cache: AuthzCache
  private readonly timeout: number
  private readonly maxErrorBody: number
  private readonly maxLengths: number
  /** Blob lengths from 2xx answers, by URL (immutable content), oldest first; at most maxLengths. */
  private readonly lengths = new Map<string, number>()
  /** Checks in progress, by key; as many as requests in progress at most. */
  private readonly pending = new Map<string, Promise<Denial | undefined>>()

  constructor (components: BlobAuthorizerComponents, init: BlobAuthorizerInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:dfget:authz')
    this.maxLengths = init.cacheEntries ?? DEFAULT_AUTHZ_CACHE_ENTRIES
    this.cache = new AuthzCache({ ttl: init.cacheTtl ?? DEFAULT_AUTHZ_CACHE_TTL, maxEntries: this.maxLengths })
    this.timeout = init.timeout ?? DEFAULT_AUTHZ_TIMEOUT
    this.maxErrorBody = init.maxErrorBody ?? DEFAULT_AUTHZ_MAX_ERROR_BODY
  }

  /**
   * The Content-Length an upstream gave with a yes for `url`, if one was seen: a blob
   * HEAD answered after a check then needs no second request upstream. Ask only after
   * {@link check} said yes for the client at hand.
   */
  lengthOf (url: string): number | undefined {
    return this.lengths.get(url)
  }

  private rememberLength (url: string, header: string | string[] | undefined): void {
    if (typeof header !== 'string' || !/^\d{1,16}$/.test(header)) {
      return
    }
    this.lengths.delete(url)
    this.lengths.set(url, Number(header))
    // bounded: one over at most
    for (const oldest of this.lengths.keys()) {
      if (this.lengths.size <= this.maxLengths) {
        break
      }
      this.lengths.delete(oldest)
    }
  }

  /**
   * Resolves with undefined when the client may read `url`, or with the upstream's
   * denial. Aborting `signal` stops waiting; the check goes on for whoever else asked.
   *
   * @throws {AuthorizationUnavailableError} when the upstream cannot be asked
   * @throws {SourceRefusedError} when `url` is not a source this daemon may fetch
   */
  async check (url: string, headers: Record<string, string>, signal: AbortSignal, options: CheckOptions = {}): Promise<Denial | undefined> {
    const { metrics } = this.components
    const redirectMeansYes = options.redirectMeansYes ?? true
    const key = `${authzKey(headers, url)}${redirectMeansYes ? '' : ':2xx'}`
    if (this.cache.has(key)) {
      metrics.authzChecks.inc({ result: 'cached' })
      return undefined
    }
    // clients asking the same at once (a node's pods pulling one image) share one HEAD,
    // which runs to its own timeout whoever of them goes away
    let pending = this.pending.get(key)
    if (pending == null) {
      pending = this.ask(url, headers, key, redirectMeansYes).finally(() => { this.pending.delete(key) })
      this.pending.set(key, pending)
    } else {
      metrics.authzChecks.inc({ result: 'cached' })
    }
    return raceSignal(pending, signal)
  }

  private async ask (url: string, headers: Record<string, string>, key: string, redirectMeansYes: boolean): Promise<Denial | undefined> {
    const { metrics } = this.components
    const signal = AbortSignal.timeout(this.timeout)
    let res: SourceHeadResponse
    let body: Buffer
    try {
      res = await raceSignal(this.components.sourceHead(url, { headers, signal }), signal)
      body = await this.readBounded(res.body, signal)
    } catch (err) {
      if (err instanceof SourceRefusedError) {
        // not a source this daemon may ask at all: the caller refuses it (403)
        metrics.authzChecks.inc({ result: 'denied' })
        throw err
      }
      metrics.authzChecks.inc({ result: 'error' })
      this.log.warn({ err, url }, 'cannot ask the upstream whether the client may read this')
      throw new AuthorizationUnavailableError(`cannot ask ${new URL(url).origin} whether the client may read this: ${(err as Error).message}`, { cause: err })
    }

    if ((res.statusCode >= 200 && res.statusCode < 300) || (redirectMeansYes && REDIRECTS.has(res.statusCode))) {
      metrics.authzChecks.inc({ result: 'allowed' })
      if (res.statusCode < 300) {
        this.rememberLength(url, res.headers['content-length'])
      }
      this.cache.allow(key)
      return undefined
    }
    if (res.statusCode >= 300 && res.statusCode < 400) {
      metrics.authzChecks.inc({ result: 'denied' })
      return {
        status: 403,
        headers: { 'content-type': 'application/json; charset=utf-8' },
        body: Buffer.from(JSON.stringify({ errors: [{ code: 'DENIED', message: `the source answered ${res.statusCode} to a HEAD with this client's headers, which does not show that this client may read it; content this host holds or the swarm shares is served only on a 2xx`, detail: null }] }))
      }
    }
    metrics.authzChecks.inc({ result: res.statusCode >= 500 ? 'error' : 'denied' })
    this.log.debug({ url, status: res.statusCode }, 'upstream denied the client')
    return this.denial(res, body, url)
  }

  private denial (res: SourceHeadResponse, body: Buffer, url: string): Denial {
    const headers: Record<string, string> = {}
    for (const name of DENIAL_HEADERS) {
      const value = res.headers[name]
      const text = Array.isArray(value) ? value.join(', ') : value
      if (text != null) {
        headers[name] = text
      }
    }
    if (body.byteLength > 0) {
      return { status: res.statusCode, headers, body }
    }
    // a HEAD answer has no body: say what the registry would have said
    // the same check guards manifests by digest, whose 404 the spec names otherwise
    const manifest = res.statusCode === 404 && new URL(url).pathname.includes('/manifests/')
    const [code, message] = manifest ? ['MANIFEST_UNKNOWN', 'manifest unknown to registry'] : STATUS_CODES[res.statusCode] ?? ['UNKNOWN', `upstream answered ${res.statusCode}`]
    return {
      status: res.statusCode,
      headers: { ...headers, 'content-type': 'application/json; charset=utf-8' },
      body: Buffer.from(JSON.stringify({ errors: [{ code, message, detail: null }] }))
    }
  }

  private async readBounded (body: AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<Buffer> {
    const chunks: Uint8Array[] = []
    let size = 0
    for await (const chunk of body) {
      signal.throwIfAborted()
      chunks.push(chunk.subarray(0, this.maxErrorBody - size))
      size += chunk.byteLength
      if (size >= this.maxErrorBody) {
        break
      }
    }
    return Buffer.concat(chunks)
  }
}

/** Sends a denial to the client as the upstream gave it: status, challenge and error body, no content. */
export function sendDenial (res: ServerResponse, denial: Denial): void {
  res.writeHead(denial.status, { ...denial.headers, 'content-length': String(denial.body.byteLength) })
  res.end(denial.body)
}
