import { raceSignal, type ComponentLogger, type Logger, type SourceClient } from '@shoal/core'
import { request } from 'undici'
import {
  DEFAULT_AUTH_TIMEOUT, DEFAULT_CHALLENGE_TTL, DEFAULT_MAX_TOKENS, DEFAULT_TOKEN_EXPIRY_MARGIN, DEFAULT_TOKEN_LIFETIME, MAX_TOKEN_RESPONSE
} from './constants.ts'
import { UpstreamAuthError } from '../errors.ts'
import type { Upstream } from './upstreams.ts'

export interface UpstreamAuthInit {
  /** Longest one challenge probe or token request may take. @default 10000 ms ({@link DEFAULT_AUTH_TIMEOUT}) */
  timeout?: number
  /** Tokens kept. @default 1000 ({@link DEFAULT_MAX_TOKENS}) */
  maxTokens?: number
  /** A token is dropped this long before it expires. @default 10000 ms ({@link DEFAULT_TOKEN_EXPIRY_MARGIN}) */
  expiryMargin?: number
  /** How long a learnt challenge is reused. @default 600000 ms ({@link DEFAULT_CHALLENGE_TTL}) */
  challengeTtl?: number
}

export interface UpstreamAuthComponents {
  /** Asks the upstream's `/v2/` for its challenge (the upstream is always an allowed source). */
  source: Pick<SourceClient, 'fetch'>
  logger: ComponentLogger
  /** @default Date.now */
  now?: () => number
}

/** How an upstream wants to be authenticated, from its `WWW-Authenticate`. */
export type Challenge =
  | { scheme: 'none' }
  | { scheme: 'basic' }
  | { scheme: 'bearer', realm: string, service?: string }

/**
 * Parses a `WWW-Authenticate` header: `Basic realm="..."` or
 * `Bearer realm="...",service="...",scope="..."`. Undefined for anything else.
 */
export function parseChallenge (header: string | string[] | undefined): Challenge | undefined {
  const text = Array.isArray(header) ? header[0] : header
  if (text == null) {
    return undefined
  }
  const m = /^\s*(\w+)\s*(.*)$/s.exec(text)
  const scheme = m?.[1]?.toLowerCase()
  if (scheme === 'basic') {
    return { scheme: 'basic' }
  }
  if (scheme !== 'bearer') {
    return undefined
  }
  const params = new Map<string, string>()
  // bounded by the header's length: each match consumes at least one character
  for (const p of (m?.[2] ?? '').matchAll(/([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) {
    params.set((p[1] ?? '').toLowerCase(), (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1'))
  }
  const realm = params.get('realm')
  if (realm == null || realm === '') {
    return undefined
  }
  const service = params.get('service')
  return { scheme: 'bearer', realm, ...(service != null ? { service } : {}) }
}

/** The scope of pulling from a repository, as the distribution token spec writes it. */
export const pullScope = (repository: string): string => `repository:${repository}:pull`

const basic = (c: { username: string, password: string }): string => `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`

/**
 * The daemon's own credentials at an upstream, for clients that send none: it learns
 * the upstream's challenge from `/v2/` once, then answers it itself: Basic directly, or
 * a Bearer token from the realm (the distribution token spec, with basic auth to the
 * realm), cached per upstream and scope until shortly before it expires.
 */
export class UpstreamAuth {
  private readonly components: UpstreamAuthComponents
  private readonly log: Logger
  private readonly now: () => number
  private readonly timeout: number
  private readonly maxTokens: number
  private readonly expiryMargin: number
  private readonly challengeTtl: number
  /** By upstream name. */
  private readonly challenges = new Map<string, { challenge: Challenge, expires: number }>()
  /** By `upstream scope`; Map order is least recently used first. */
  private readonly tokens = new Map<string, { value: string, expires: number }>()
  /** Token requests in flight, so clients asking at once share one. */
  private readonly pending = new Map<string, Promise<string | undefined>>()

  constructor (components: UpstreamAuthComponents, init: UpstreamAuthInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:dfget:upstream-auth')
    this.now = components.now ?? Date.now
    this.timeout = init.timeout ?? DEFAULT_AUTH_TIMEOUT
    this.maxTokens = Math.max(1, init.maxTokens ?? DEFAULT_MAX_TOKENS)
    this.expiryMargin = init.expiryMargin ?? DEFAULT_TOKEN_EXPIRY_MARGIN
    this.challengeTtl = init.challengeTtl ?? DEFAULT_CHALLENGE_TTL
  }

  /**
   * The `Authorization` header the daemon sends `upstream` for `scope` (a pull scope,
   * or undefined for `/v2/`): undefined when it has no credentials there or the
   * upstream asks for none.
   *
   * @throws {UpstreamAuthError} when the challenge or a token cannot be had
   */
  async authorization (upstream: Upstream, scope: string | undefined, options: { signal?: AbortSignal } = {}): Promise<string | undefined> {
    const credentials = upstream.credentials
    if (credentials == null) {
      return undefined
    }
    const key = `${upstream.name} ${scope ?? ''}`
    const cached = this.tokens.get(key)
    if (cached != null && cached.expires > this.now()) {
      this.tokens.delete(key)
      this.tokens.set(key, cached)
      return cached.value
    }
    this.tokens.delete(key)
    let pending = this.pending.get(key)
    if (pending == null) {
      pending = this.fetchAuthorization(upstream, credentials, scope, key).finally(() => { this.pending.delete(key) })
      this.pending.set(key, pending)
    }
    return options.signal != null ? raceSignal(pending, options.signal) : pending
  }

  /** Forgets what was learnt of `upstream` (its challenge and tokens), after it refused them. */
  invalidate (upstream: Pick<Upstream, 'name'>): void {
    this.challenges.delete(upstream.name)
    for (const key of [...this.tokens.keys()]) {
      if (key.startsWith(`${upstream.name} `)) {
        this.tokens.delete(key)
      }
    }
  }

  private async fetchAuthorization (upstream: Upstream, credentials: { username: string, password: string }, scope: string | undefined, key: string): Promise<string | undefined> {
    const challenge = await this.challenge(upstream)
    if (challenge.scheme === 'none') {
      return undefined
    }
    if (challenge.scheme === 'basic') {
      return basic(credentials)
    }
    const { token, lifetime } = await this.requestToken(upstream, challenge, credentials, scope)
    const value = `Bearer ${token}`
    const expires = this.now() + Math.max(0, lifetime - this.expiryMargin)
    if (expires > this.now()) {
      this.tokens.set(key, { value, expires })
      // bounded: at most one entry over, so this runs at most once per call
      while (this.tokens.size > this.maxTokens) {
        const oldest = this.tokens.keys().next()
        if (oldest.done === true) {
          break
        }
        this.tokens.delete(oldest.value)
      }
    }
    return value
  }

  private async challenge (upstream: Upstream): Promise<Challenge> {
    const known = this.challenges.get(upstream.name)
    if (known != null && known.expires > this.now()) {
      return known.challenge
    }
    let res
    try {
      res = await this.components.source.fetch(`${upstream.url}/v2/`, { method: 'HEAD', signal: AbortSignal.timeout(this.timeout), redirect: 'manual' })
    } catch (err) {
      throw new UpstreamAuthError(`cannot ask ${upstream.name} how to authenticate: ${(err as Error).message}`, { cause: err })
    }
    await res.dump()
    let challenge: Challenge | undefined
    if (res.statusCode === 401) {
      challenge = parseChallenge(res.headers['www-authenticate'])
      if (challenge == null) {
        throw new UpstreamAuthError(`${upstream.name} answered 401 without a Basic or Bearer challenge the daemon can answer`)
      }
    } else if (res.statusCode >= 200 && res.statusCode < 300) {
      challenge = { scheme: 'none' }
    } else {
      throw new UpstreamAuthError(`${upstream.name} answered ${res.statusCode} to /v2/`)
    }
    this.challenges.set(upstream.name, { challenge, expires: this.now() + this.challengeTtl })
    this.log.debug({ upstream: upstream.name, scheme: challenge.scheme }, 'learnt the upstream challenge')
    return challenge
  }

  private async requestToken (upstream: Upstream, challenge: { realm: string, service?: string }, credentials: { username: string, password: string }, scope: string | undefined): Promise<{ token: string, lifetime: number }> {
    let realm: URL
    try {
      realm = new URL(challenge.realm)
    } catch {
      throw new UpstreamAuthError(`${upstream.name} names a token realm that is not a URL: ${JSON.stringify(challenge.realm.slice(0, 256))}`)
    }
    // the password goes to the realm: never in clear unless the registry itself is plain http
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && upstream.url.startsWith('http:'))) {
      throw new UpstreamAuthError(`${upstream.name} names a token realm ${realm.origin} the daemon will not send its credentials to (https only, for an https registry)`)
    }
    if (challenge.service != null) {
      realm.searchParams.set('service', challenge.service)
    }
    if (scope != null) {
      realm.searchParams.set('scope', scope)
    }
    const signal = AbortSignal.timeout(this.timeout)
    try {
      const res = await request(realm, { method: 'GET', headers: { authorization: basic(credentials) }, dispatcher: upstream.dispatcher, signal })
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body) {
        size += (chunk as Buffer).byteLength
        if (size > MAX_TOKEN_RESPONSE) {
          res.body.destroy()
          throw new UpstreamAuthError(`token response from ${realm.origin} is larger than ${MAX_TOKEN_RESPONSE} bytes`)
        }
        chunks.push(chunk as Buffer)
      }
      if (res.statusCode !== 200) {
        throw new UpstreamAuthError(`token request to ${realm.origin} for ${scope ?? 'the registry'} answered ${res.statusCode}`)
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { token?: unknown, access_token?: unknown, expires_in?: unknown }
      const token = typeof body.token === 'string' && body.token !== '' ? body.token : body.access_token
      if (typeof token !== 'string' || token === '' || /[\r\n\0]/.test(token)) {
        throw new UpstreamAuthError(`token response from ${realm.origin} holds no token`)
      }
      const seconds = typeof body.expires_in === 'number' && Number.isFinite(body.expires_in) && body.expires_in > 0 ? body.expires_in : undefined
      return { token, lifetime: seconds != null ? seconds * 1000 : DEFAULT_TOKEN_LIFETIME }
    } catch (err) {
      if (err instanceof UpstreamAuthError) {
        throw err
      }
      throw new UpstreamAuthError(`cannot get a token from ${realm.origin} for ${upstream.name}: ${(err as Error).message}`, { cause: err })
    }
  }
}
