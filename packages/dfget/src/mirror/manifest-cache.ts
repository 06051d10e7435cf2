import { createHash } from 'node:crypto'
import { HttpError, raceSignal, SourceRefusedError, type ComponentLogger, type Logger, type SourceClient, type SourceResponse } from '@shoal/core'
import { authzKey } from './authz-cache.ts'
import { MANIFEST_CACHE_BYTES, MANIFEST_FETCH_TIMEOUT, MAX_MANIFEST_BYTES } from './constants.ts'
import type { Denial } from './blob-authorizer.ts'
import type { DfgetMetrics } from '../metrics.ts'

export interface ManifestCacheInit {
  /** Bytes of manifests kept, least recently used dropped first. @default 64 MiB ({@link MANIFEST_CACHE_BYTES}) */
  maxBytes?: number
  /** Largest manifest accepted; a larger one is refused (502), not served. @default 4 MiB ({@link MAX_MANIFEST_BYTES}) */
  maxManifestBytes?: number
  /** Longest one upstream fetch may take. @default 30000 ms ({@link MANIFEST_FETCH_TIMEOUT}) */
  fetchTimeout?: number
}

export interface ManifestCacheComponents {
  /** The upstream is always one of its allowed sources. */
  source: Pick<SourceClient, 'fetch'>
  metrics: Pick<DfgetMetrics, 'manifestCache'>
  logger: ComponentLogger
}

/** A manifest held by digest: its bytes hash to it. */
export interface CachedManifest {
  digest: string
  contentType: string
  body: Buffer
}

export type ManifestFetch = { manifest: CachedManifest } | { denial: Denial }

/** Response headers of an upstream "no" the client needs, for its token exchange. */
const DENIAL_HEADERS = ['www-authenticate', 'docker-distribution-api-version', 'content-type']

/**
 * Manifests by digest, which are immutable: fetched from the upstream once, checked
 * against their digest, and then served from memory to every client the upstream
 * allows (the caller asks the authorizer first, as for blobs). Bounded in bytes; tags
 * never come here, they always resolve upstream.
 */
export class ManifestCache {
  private readonly components: ManifestCacheComponents
  private readonly log: Logger
  private readonly maxBytes: number
  private readonly maxManifestBytes: number
  private readonly fetchTimeout: number
  /** digest → manifest; Map order is least recently used first. */
  private readonly entries = new Map<string, CachedManifest>()
  private bytes = 0
  /** Fetches in progress, by client credentials and URL: as many as requests in progress at most. */
  private readonly pending = new Map<string, Promise<ManifestFetch>>()

  constructor (components: ManifestCacheComponents, init: ManifestCacheInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:dfget:manifests')
    this.maxBytes = init.maxBytes ?? MANIFEST_CACHE_BYTES
    this.maxManifestBytes = init.maxManifestBytes ?? MAX_MANIFEST_BYTES
    this.fetchTimeout = init.fetchTimeout ?? MANIFEST_FETCH_TIMEOUT
  }

  get size (): number {
    return this.entries.size
  }

  /** The manifest, when held; counts a hit. */
  get (digest: string): CachedManifest | undefined {
    const manifest = this.entries.get(digest)
    if (manifest != null) {
      this.entries.delete(digest)
      this.entries.set(digest, manifest)
      this.components.metrics.manifestCache.inc({ result: 'hit' })
    }
    return manifest
  }

  /**
   * Fetches `url` (the upstream's manifest URL for `digest`) with the client's headers:
   * the manifest, verified and now held, or the upstream's denial. Clients asking the
   * same with the same credentials at once share one fetch.
   *
   * @throws {HttpError} 502 when the upstream fails or sends a manifest that is too large or does not match `digest`
   */
  async fetch (url: string, digest: string, headers: Record<string, string>, options: { signal?: AbortSignal } = {}): Promise<ManifestFetch> {
    const key = authzKey(headers, url)
    let pending = this.pending.get(key)
    if (pending == null) {
      this.components.metrics.manifestCache.inc({ result: 'miss' })
      pending = this.fetchOnce(url, digest, headers).finally(() => { this.pending.delete(key) })
      this.pending.set(key, pending)
    } else {
      this.components.metrics.manifestCache.inc({ result: 'hit' })
    }
    return options.signal != null ? raceSignal(pending, options.signal) : pending
  }

  private async fetchOnce (url: string, digest: string, headers: Record<string, string>): Promise<ManifestFetch> {
    const signal = AbortSignal.timeout(this.fetchTimeout)
    let res: SourceResponse
    try {
      res = await this.components.source.fetch(url, { method: 'GET', headers, signal })
    } catch (err) {
      if (err instanceof SourceRefusedError) {
        throw new HttpError(403, 'DENIED', err.message)
      }
      throw new HttpError(502, 'UNAVAILABLE', `cannot fetch manifest ${digest} from ${new URL(url).origin}: ${(err as Error).message}`)
    }
    try {
      const declared = Number(res.headers['content-length'])
      if (res.statusCode >= 200 && res.statusCode < 300 && declared > this.maxManifestBytes) {
        throw this.tooLarge(digest, declared)
      }
      const body = await this.readBounded(res, signal, res.statusCode < 300 ? this.maxManifestBytes : 65_536, digest)
      if (res.statusCode < 200 || res.statusCode >= 300) {
        return { denial: denial(res, body) }
      }
      const [algorithm, expected] = digest.split(':')
      const actual = createHash(algorithm ?? 'sha256').update(body).digest('hex')
      if (actual !== expected) {
        this.log.warn({ url, digest, actual }, 'upstream manifest does not match its digest')
        throw new HttpError(502, 'MANIFEST_INVALID', `the upstream's manifest for ${digest} hashes to ${algorithm ?? 'sha256'}:${actual}; not served`)
      }
      const contentType = typeof res.headers['content-type'] === 'string' ? res.headers['content-type'] : mediaTypeOf(body)
      const manifest = { digest, contentType, body }
      this.store(manifest)
      return { manifest }
    } finally {
      res.body.destroy()
    }
  }

  private store (manifest: CachedManifest): void {
    const old = this.entries.get(manifest.digest)
    if (old != null) {
      this.bytes -= old.body.byteLength
      this.entries.delete(manifest.digest)
    }
    this.entries.set(manifest.digest, manifest)
    this.bytes += manifest.body.byteLength
    // bounded: each pass drops one entry, and the newest alone fits (maxManifestBytes)
    for (const [digest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes || digest === manifest.digest) {
        break
      }
      this.entries.delete(digest)
      this.bytes -= entry.body.byteLength
    }
  }

  private tooLarge (digest: string, size: number): HttpError {
    return new HttpError(502, 'MANIFEST_INVALID', `the upstream's manifest ${digest} is ${size} bytes or more; manifests larger than ${this.maxManifestBytes} bytes are refused`)
  }

  private async readBounded (res: SourceResponse, signal: AbortSignal, limit: number, digest: string): Promise<Buffer> {
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      signal.throwIfAborted()
      size += chunk.byteLength
      if (size > limit) {
        if (res.statusCode < 300) {
          throw this.tooLarge(digest, size)
        }
        // an error body: what fits is enough for the client
        chunks.push(chunk.subarray(0, chunk.byteLength - (size - limit)))
        break
      }
      chunks.push(chunk)
    }
    return Buffer.concat(chunks)
  }
}

/** The upstream's "no", as it came: status, challenge and error body. */
function denial (res: SourceResponse, body: Buffer): Denial {
  const headers: Record<string, string> = {}
  for (const name of DENIAL_HEADERS) {
    const value = res.headers[name]
    if (value != null) {
      headers[name] = Array.isArray(value) ? value.join(', ') : value
    }
  }
  return { status: res.statusCode, headers, body }
}

/** A manifest's own `mediaType`, for an upstream that sent no Content-Type. */
function mediaTypeOf (body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { mediaType?: unknown, manifests?: unknown }
    if (typeof parsed.mediaType === 'string') {
      return parsed.mediaType
    }
    return Array.isArray(parsed.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json'
  } catch {
    return 'application/octet-stream'
  }
}
