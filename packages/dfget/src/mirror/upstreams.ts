import { InvalidConfigError, isRegistryHost, type SourceTls } from '@shoal/core'
import { Agent, type Dispatcher } from 'undici'
import { DEFAULT_AUTH_TIMEOUT, DOCKER_HUB_KEY, DOCKER_HUB_NAMES } from './constants.ts'
import { UnknownUpstreamError } from '../errors.ts'

/** One upstream registry as configured (`upstreams:` in the daemon's config file). */
export interface UpstreamInit {
  /**
   * The registry host as image references name it: `registry.example.com`,
   * `registry.example.com:5000`, `docker.io`. containerd's `?ns=` names it.
   */
  name: string
  /** Base URL of its registry API, such as https://registry.example.com:5000 */
  url: string
  /** The daemon's own credentials there, used when a client sends none. @default none */
  username?: string
  password?: string
  /** PEM certificates trusted for it instead of the system's CAs (the file `caFile` names, read). @default none */
  ca?: string
  /** Do not check its certificate at all. @default false */
  insecureSkipVerify?: boolean
}

/** An upstream registry the mirror stands in for. */
export interface Upstream {
  /** Its name, lower case, as configured (Docker Hub: as configured or the `--registry` host). */
  name: string
  /** Base URL, no trailing slash. */
  url: string
  /** `url`'s origin: what the daemon's source client allows. */
  origin: string
  /** The daemon's own credentials, when configured. */
  credentials?: { username: string, password: string }
  ca?: string
  insecureSkipVerify: boolean
  /** Docker Hub: one-component repository names get `library/`. */
  dockerHub: boolean
  /** For the requests the source client does not make (token requests), with this upstream's TLS settings. */
  dispatcher: Dispatcher
}

export interface UpstreamsInit {
  /** `--registry`: the default upstream, for requests without `?ns=`; its name is its URL's host. */
  registry: string
  /** Further upstreams by name; one with the `--registry` host's name replaces it (URL, credentials, TLS). @default [] */
  upstreams?: UpstreamInit[]
  /** TCP + TLS connect of token requests. @default 10000 ms */
  connectTimeout?: number
}

/** The key an upstream is found under: its name in lower case, Docker Hub's names as one. */
export function upstreamKey (name: string): string {
  const lower = name.trim().toLowerCase()
  return DOCKER_HUB_NAMES.has(lower) ? DOCKER_HUB_KEY : lower
}

/** Whether `name` is a registry host (`host[:port]`) an image reference could name. */
export function isUpstreamName (name: string): boolean {
  return isRegistryHost(name)
}

/**
 * The upstream registries the mirror stands in for, by name. containerd's `?ns=<host>`
 * picks one; a request without it goes to the default (`--registry`). A name that is
 * not configured is refused, never answered from another registry.
 *
 * @example
 *
 * ```typescript
 * const upstreams = new Upstreams({ registry: 'https://registry-1.docker.io', upstreams: [{ name: 'registry.example.com:5000', url: 'https://registry.example.com:5000' }] })
 * upstreams.resolve('docker.io').url // https://registry-1.docker.io
 * upstreams.resolve(undefined).name  // registry-1.docker.io
 * upstreams.resolve('ghcr.io')       // throws UnknownUpstreamError
 * ```
 */
export class Upstreams {
  private readonly byKey = new Map<string, Upstream>()
  private readonly defaultKey: string

  /** @throws {InvalidConfigError} for a bad name or URL, or a name given twice */
  constructor (init: UpstreamsInit) {
    const connectTimeout = init.connectTimeout ?? DEFAULT_AUTH_TIMEOUT
    const registry = parseUrl(init.registry, '--registry')
    this.defaultKey = upstreamKey(registry.host)
    const seen = new Set<string>()
    for (const [i, entry] of (init.upstreams ?? []).entries()) {
      const field = `upstreams.${i}`
      if (!isUpstreamName(entry.name)) {
        throw new InvalidConfigError(`${field}.name: ${JSON.stringify(entry.name.slice(0, 256))} is not a registry host (host or host:port, as image references name it)`)
      }
      const key = upstreamKey(entry.name)
      if (seen.has(key)) {
        throw new InvalidConfigError(`${field}.name: ${entry.name} is configured twice${key === DOCKER_HUB_KEY ? ' (docker.io, index.docker.io and registry-1.docker.io are one registry)' : ''}`)
      }
      seen.add(key)
      if ((entry.username == null) !== (entry.password == null)) {
        throw new InvalidConfigError(`${field}: give both username and password, or neither`)
      }
      this.byKey.set(key, this.upstream(entry.name, parseUrl(entry.url, `${field}.url`), entry, connectTimeout))
    }
    if (!this.byKey.has(this.defaultKey)) {
      this.byKey.set(this.defaultKey, this.upstream(registry.host, registry, {}, connectTimeout))
    }
  }

  private upstream (name: string, url: URL, entry: Omit<UpstreamInit, 'name' | 'url'>, connectTimeout: number): Upstream {
    const ca = entry.ca
    const insecureSkipVerify = entry.insecureSkipVerify ?? false
    return {
      name: name.trim().toLowerCase(),
      url: url.href.replace(/\/+$/, ''),
      origin: url.origin,
      ...(entry.username != null && entry.password != null ? { credentials: { username: entry.username, password: entry.password } } : {}),
      ...(ca != null ? { ca } : {}),
      insecureSkipVerify,
      dockerHub: upstreamKey(name) === DOCKER_HUB_KEY,
      dispatcher: new Agent({
        connect: { timeout: connectTimeout, ...(ca != null ? { ca } : {}), ...(insecureSkipVerify ? { rejectUnauthorized: false } : {}) }
      })
    }
  }

  /** The upstream requests without `?ns=` go to. */
  get default (): Upstream {
    const upstream = this.byKey.get(this.defaultKey)
    if (upstream == null) {
      throw new UnknownUpstreamError('', 'no default upstream') // the constructor always sets one
    }
    return upstream
  }

  /**
   * The upstream a request names with `?ns=`, or the default without one.
   *
   * @throws {UnknownUpstreamError} when `ns` names no configured upstream
   */
  resolve (ns: string | undefined): Upstream {
    if (ns == null || ns === '') {
      return this.default
    }
    const upstream = this.byKey.get(upstreamKey(ns))
    if (upstream == null) {
      const host = ns.slice(0, 256)
      throw new UnknownUpstreamError(host, `registry ${JSON.stringify(host)} is not an upstream of this mirror (configured: ${this.list().map(u => u.name).join(', ')})`)
    }
    return upstream
  }

  /** Every upstream, the default first. */
  list (): Upstream[] {
    const all = [...this.byKey.values()]
    return [this.default, ...all.filter(u => u !== this.default)]
  }

  /** The origins the daemon's source client must allow. */
  origins (): string[] {
    return [...new Set(this.list().map(u => u.origin))]
  }

  /** TLS settings of the upstreams that have their own, for the source client. */
  tls (): SourceTls[] {
    const out = new Map<string, SourceTls>()
    for (const u of this.list()) {
      if (u.ca != null || u.insecureSkipVerify) {
        out.set(new URL(u.url).host, { host: new URL(u.url).host, ...(u.ca != null ? { ca: u.ca } : {}), insecureSkipVerify: u.insecureSkipVerify })
      }
    }
    return [...out.values()]
  }

  /**
   * A repository name as `upstream` knows it: Docker Hub keeps official images under
   * `library/`, which clients may leave out (`alpine` is `library/alpine`).
   */
  repository (upstream: Pick<Upstream, 'dockerHub'>, name: string): string {
    return upstream.dockerHub && !name.includes('/') ? `library/${name}` : name
  }

  /**
   * The upstream URL of a mirror request's path (`/v2/...`, `?ns=` and the rest of its
   * query dropped or kept as given): Docker Hub names get `library/`.
   */
  target (upstream: Upstream, pathname: string, search: URLSearchParams = new URLSearchParams()): string {
    const query = new URLSearchParams(search)
    query.delete('ns')
    const rest = query.size > 0 ? `?${query.toString()}` : ''
    const m = /^\/v2\/([^/]+)(\/(?:manifests|blobs|tags|referrers)\/.*)$/.exec(pathname)
    const path = m != null ? `/v2/${this.repository(upstream, m[1] ?? '')}${m[2] ?? ''}` : pathname
    return `${upstream.url}${path}${rest}`
  }

  async stop (): Promise<void> {
    await Promise.all([...this.byKey.values()].map(async u => { await u.dispatcher.close() }))
  }
}

function parseUrl (value: string, field: string): URL {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new InvalidConfigError(`${field}: ${JSON.stringify(value.slice(0, 256))} is not a URL (expected https://host[:port])`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidConfigError(`${field}: ${JSON.stringify(value.slice(0, 256))} must be an http:// or https:// URL`)
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new InvalidConfigError(`${field}: ${JSON.stringify(url.origin)}: give credentials as username and password, and no query`)
  }
  return url
}
