import { createHash } from 'node:crypto'
import { HttpError, raceSignal, type ComponentLogger, type Logger } from '@shoal/core'
import { MANIFEST_CACHE_BYTES, MANIFEST_FETCH_TIMEOUT, MAX_MANIFEST_BYTES } from './constants.ts'
import type { DfgetMetrics } from '../metrics.ts'

export interface ManifestCacheInit {
  /** Bytes of manifests kept, least recently used dropped first. @default 64 MiB ({@link MANIFEST_CACHE_BYTES}) */
  maxBytes?: number
  /** Largest manifest accepted; a larger one is refused (502), not served. @default 4 MiB ({@link MAX_MANIFEST_BYTES}) */
  maxManifestBytes?: number
  /** Longest one load may take. @default 30000 ms ({@link MANIFEST_FETCH_TIMEOUT}) */
  loadTimeout?: number
}

export interface ManifestCacheComponents {
  metrics: Pick<DfgetMetrics, 'manifestCache'>
  logger: ComponentLogger
}

/** A manifest held by digest: its bytes hash to it. */
export interface CachedManifest {
  digest: string
  /** The manifest's own `mediaType` (what the registry answers as Content-Type) */
  contentType: string
  body: Buffer
}

/** Brings a manifest's bytes, at most `maxBytes` of them (through the swarm, in the daemon). */
export type ManifestLoader = (options: { signal: AbortSignal, maxBytes: number }) => Promise<Buffer>

/**
 * Manifests by digest, which are immutable: loaded once (through the swarm, so the
 * supernode fetches each from the registry once for the whole fleet), checked against
 * their digest, and then served from memory. The caller asks the authorizer before
 * serving one to a client, as for blobs. Bounded in bytes; tags never come here, they
 * always resolve upstream.
 */
export class ManifestCache {
  private readonly components: ManifestCacheComponents
  private readonly log: Logger
  private readonly maxBytes: number
  readonly maxManifestBytes: number
  private readonly loadTimeout: number
  /** digest → manifest; Map order is least recently used first. */
  private readonly entries = new Map<string, CachedManifest>()
  private bytes = 0
  /** Loads in progress, by digest: as many as requests in progress at most. */
  private readonly pending = new Map<string, Promise<CachedManifest>>()

  constructor (components: ManifestCacheComponents, init: ManifestCacheInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:dfget:manifests')
    this.maxBytes = init.maxBytes ?? MANIFEST_CACHE_BYTES
    this.maxManifestBytes = init.maxManifestBytes ?? MAX_MANIFEST_BYTES
    this.loadTimeout = init.loadTimeout ?? MANIFEST_FETCH_TIMEOUT
  }

  get size (): number {
    return this.entries.size
  }

  /**
   * The manifest: from memory, or from `loader` (once however many ask at once; the load
   * runs to its own timeout whoever of them goes away), verified against `digest`.
   *
   * @throws {HttpError} 502 MANIFEST_INVALID when the bytes do not match `digest` or are too large; what `loader` throws
   */
  async get (digest: string, loader: ManifestLoader, options: { signal?: AbortSignal } = {}): Promise<CachedManifest> {
    const held = this.entries.get(digest)
    if (held != null) {
      this.entries.delete(digest)
      this.entries.set(digest, held)
      this.components.metrics.manifestCache.inc({ result: 'hit' })
      return held
    }
    let pending = this.pending.get(digest)
    if (pending == null) {
      this.components.metrics.manifestCache.inc({ result: 'miss' })
      pending = this.load(digest, loader).finally(() => { this.pending.delete(digest) })
      this.pending.set(digest, pending)
    } else {
      this.components.metrics.manifestCache.inc({ result: 'hit' })
    }
    return options.signal != null ? raceSignal(pending, options.signal) : pending
  }

  private async load (digest: string, loader: ManifestLoader): Promise<CachedManifest> {
    const body = await loader({ signal: AbortSignal.timeout(this.loadTimeout), maxBytes: this.maxManifestBytes })
    if (body.byteLength > this.maxManifestBytes) {
      throw this.tooLarge(digest, body.byteLength)
    }
    const [algorithm, expected] = digest.split(':')
    const actual = createHash(algorithm ?? 'sha256').update(body).digest('hex')
    if (actual !== expected) {
      this.log.warn({ digest, actual }, 'manifest does not match its digest')
      throw new HttpError(502, 'MANIFEST_INVALID', `the manifest fetched for ${digest} hashes to ${algorithm ?? 'sha256'}:${actual}; not served`)
    }
    const manifest = { digest, contentType: mediaTypeOf(body), body }
    this.store(manifest)
    return manifest
  }

  /** The error for a manifest over the size limit. */
  tooLarge (digest: string, size: number): HttpError {
    return new HttpError(502, 'MANIFEST_INVALID', `the manifest ${digest} is ${size} bytes or more; manifests larger than ${this.maxManifestBytes} bytes are refused`)
  }

  private store (manifest: CachedManifest): void {
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
}

/** A media type fit for a header (RFC 6838 names, no parameters). */
const MEDIA_TYPE_RE = /^[a-zA-Z0-9][\w.+-]{0,126}\/[a-zA-Z0-9][\w.+-]{0,126}$/

const SCHEMA1 = 'application/vnd.docker.distribution.manifest.v1+prettyjws'

/**
 * A manifest's Content-Type, from its own `mediaType` (which Docker schema 2, manifest
 * lists and current OCI manifests carry, and which a registry answers with); an OCI
 * document without one is an index when it lists manifests, an image manifest otherwise.
 */
export function mediaTypeOf (body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { mediaType?: unknown, manifests?: unknown, schemaVersion?: unknown }
    if (typeof parsed.mediaType === 'string' && MEDIA_TYPE_RE.test(parsed.mediaType)) {
      return parsed.mediaType
    }
    if (parsed.schemaVersion === 1) {
      return SCHEMA1
    }
    return Array.isArray(parsed.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json'
  } catch {
    return 'application/octet-stream'
  }
}
