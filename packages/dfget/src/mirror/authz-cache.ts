import { createHash } from 'node:crypto'

export interface AuthzCacheInit {
  /** How long an allowed answer is reused; 0 keeps nothing. @default 60000 ms */
  ttl?: number
  /** Entries kept; the least recently used go first. @default 10000 */
  maxEntries?: number
}

/**
 * The cache key of one authorization question: a sha256 of the client's credentials
 * (never the credentials themselves) and what it asked for. For a blob, `target` is its
 * upstream URL, which names the repository and the digest.
 */
export function authzKey (headers: Readonly<Record<string, string>>, target: string): string {
  const hash = createHash('sha256')
  const entries = Object.entries(headers)
    .map(([name, value]) => [name.toLowerCase(), value] as const)
    .sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  for (const [name, value] of entries) {
    hash.update(`${name}\0${value}\0`)
  }
  return `${hash.digest('hex')} ${target}`
}

/**
 * Recent "allowed" answers, so a pull does not ask the upstream again for every blob
 * request. Only positive answers are kept: a denial is always asked again, so access
 * granted upstream works at once. Bounded in size and age.
 */
export class AuthzCache {
  private readonly ttl: number
  private readonly maxEntries: number
  private readonly now: () => number
  /** key → expiry; Map order is least recently used first. */
  private readonly entries = new Map<string, number>()

  constructor (init: AuthzCacheInit = {}, now: () => number = Date.now) {
    this.ttl = Math.max(0, init.ttl ?? 60_000)
    this.maxEntries = Math.max(1, init.maxEntries ?? 10_000)
    this.now = now
  }

  get size (): number {
    return this.entries.size
  }

  /** Whether `key` was allowed less than `ttl` ago. */
  has (key: string): boolean {
    const expires = this.entries.get(key)
    if (expires == null) {
      return false
    }
    this.entries.delete(key)
    if (expires <= this.now()) {
      return false
    }
    this.entries.set(key, expires)
    return true
  }

  allow (key: string): void {
    if (this.ttl === 0) {
      return
    }
    this.entries.delete(key)
    this.entries.set(key, this.now() + this.ttl)
    // bounded: at most one entry over, so this runs at most once per call
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next()
      if (oldest.done === true) {
        break
      }
      this.entries.delete(oldest.value)
    }
  }

  clear (): void {
    this.entries.clear()
  }
}
