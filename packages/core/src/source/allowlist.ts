import { InvalidConfigError } from '../errors.ts'

interface AllowEntry {
  /** 'http:' or 'https:' for an origin entry; undefined for a bare host (either scheme). */
  protocol?: string
  hostname: string
  /** undefined for a bare host without port: the scheme's default port. */
  port?: number
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 }

/** The port a URL connects to. */
export function effectivePort (url: URL): number {
  return url.port !== '' ? Number(url.port) : DEFAULT_PORTS[url.protocol] ?? 0
}

/** `host[:port]` as an operator would write it in `--allow-source`: the port only when not the default. */
export function hostLabel (url: URL): string {
  return url.port !== '' ? `${url.hostname}:${url.port}` : url.hostname
}

/** A URL's host name without IPv6 brackets, as DNS and `net.isIP` want it. */
export function bareHostname (url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1')
}

function parseEntry (entry: string): AllowEntry {
  const text = entry.trim()
  const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text)
  let url: URL
  try {
    url = new URL(hasScheme ? text : `http://${text}`)
  } catch {
    throw new InvalidConfigError(`invalid --allow-source entry ${JSON.stringify(entry)}: expected an origin such as https://registry.example.com or a host such as registry.example.com:5000`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidConfigError(`invalid --allow-source entry ${JSON.stringify(entry)}: only http:// and https:// sources are supported`)
  }
  if (url.username !== '' || url.password !== '' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    throw new InvalidConfigError(`invalid --allow-source entry ${JSON.stringify(entry)}: name an origin or a host, without credentials, path or query`)
  }
  const port = url.port !== '' ? Number(url.port) : undefined
  if (hasScheme) {
    return { protocol: url.protocol, hostname: url.hostname, port: port ?? DEFAULT_PORTS[url.protocol] ?? 0 }
  }
  return { hostname: url.hostname, ...(port != null ? { port } : {}) }
}

/**
 * The configured upstreams: origins (`https://host[:port]`, that scheme only) and bare
 * hosts (`host[:port]`, http or https; without a port, the scheme's default port).
 * Host names compare as the URL parser normalises them (lower case, IDNA, IPv4 forms).
 */
export class SourceAllowlist {
  private readonly entries: AllowEntry[]
  private readonly hostnames: Set<string>

  /** @throws {InvalidConfigError} for an entry that is not an origin or a host */
  constructor (entries: readonly string[]) {
    this.entries = entries.map(parseEntry)
    this.hostnames = new Set(this.entries.map(e => e.hostname.replace(/^\[(.*)\]$/, '$1')))
  }

  get size (): number {
    return this.entries.length
  }

  /** Whether the URL's scheme, host and port are a configured upstream. */
  allows (url: URL): boolean {
    const port = effectivePort(url)
    return this.entries.some(e =>
      e.hostname === url.hostname &&
      (e.protocol == null || e.protocol === url.protocol) &&
      (e.port ?? DEFAULT_PORTS[url.protocol]) === port)
  }

  /**
   * Whether a host name (no brackets) is configured on any port: its DNS answers are
   * trusted at connect time, since the operator named it.
   */
  trustsHostname (hostname: string): boolean {
    return this.hostnames.has(hostname.toLowerCase())
  }
}
