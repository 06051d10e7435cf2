import { createHash } from 'node:crypto'
import { request, type Dispatcher } from 'undici'
import { parseDigest } from '../digest.ts'
import { DigestMismatchError, ShoalError, SourceHttpError } from '../errors.ts'
import { createHttpDispatcher } from '../http/client.ts'
import { DEFAULT_MAX_MANIFEST_BYTES, DEFAULT_PLATFORMS, DEFAULT_REGISTRY_TIMEOUT, MANIFEST_ACCEPT, MAX_INDEX_MANIFESTS, MAX_TOKEN_RESPONSE_BYTES, MEDIA_TYPES, TOKEN_REUSE_MS } from './constants.ts'
import type { ImageReference } from './reference.ts'
import type { SourceClient } from '../source/source-client.ts'
import type { Readable } from 'node:stream'

/** The registry's manifest or index could not be used: malformed, too large, of an unknown type, or no manifest for the platforms asked. */
export class ImageResolveError extends ShoalError {
  override name = 'ImageResolveError'
  override readonly code = 'ERR_IMAGE_RESOLVE'
}

/** The registry refused the credentials (or none were given and it wants some). */
export class RegistryAuthError extends ShoalError {
  override name = 'RegistryAuthError'
  override readonly code = 'ERR_REGISTRY_AUTH'
}

export interface RegistryCredentials {
  username: string
  password: string
}

/** One blob an image needs: a layer or a config. */
export interface ImageBlob {
  digest: string
  size: number
  mediaType: string
  /** Its blob URL on the registry: `<base>/v2/<repository>/blobs/<digest>`. */
  url: string
}

export interface ResolvedImage {
  /** The digest of what the reference names (an index or a manifest). */
  digest: string
  mediaType: string
  /** The image manifests picked (one per platform asked, or the one manifest). */
  manifests: Array<{ digest: string, platform?: string }>
  /** Config and layer blobs of every manifest picked, each once. */
  blobs: ImageBlob[]
  /** The Authorization header the blobs are fetched with, when the registry asked for one. */
  authorization?: string
}

export interface ResolveOptions {
  /** `os/arch[/variant]` picked from an index. @default ['linux/amd64'] */
  platforms?: readonly string[]
  credentials?: RegistryCredentials
  signal?: AbortSignal
}

export interface RegistryClientInit {
  /** Largest manifest or index read. @default 4 MiB */
  maxManifestBytes?: number
  /** Longest one registry or token request, body included. @default 30000 ms */
  timeout?: number
}

export interface RegistryClientComponents {
  /**
   * Fetches from the registry itself: the allowlist, redirect and size checks of the
   * caller's source client. Its agent for the realm's host carries the token request
   * (see {@link RegistryClientComponents.dispatcher}).
   */
  source: Pick<SourceClient, 'fetch'> & Partial<Pick<SourceClient, 'dispatcherFor'>>
  /**
   * For the token realm the registry names (often another host, such as auth.docker.io).
   * @default the source client's agent for the realm's host (its TLS settings: a private
   * CA for a realm on the registry's host; the check of private addresses at connect),
   * else createHttpDispatcher()
   */
  dispatcher?: Dispatcher
}

interface Descriptor { mediaType?: string, digest: string, size: number, platform?: { os?: string, architecture?: string, variant?: string } }
interface ManifestJson { schemaVersion?: number, mediaType?: string, manifests?: Descriptor[], config?: Descriptor, layers?: Descriptor[] }

/**
 * Resolves an image reference to the blobs a pull of it fetches: the manifest (with
 * the right Accept), an index narrowed to the platforms asked, the config and layers.
 * Speaks the registry's auth: a Bearer challenge is answered from the token realm
 * (with basic credentials when given), a Basic challenge with the credentials.
 * Every request is bounded in time and size; a manifest asked for by digest is
 * verified against it.
 */
export class RegistryClient {
  private readonly source: RegistryClientComponents['source']
  private readonly dispatcher: Dispatcher | undefined
  private readonly ownsDispatcher: boolean
  private readonly maxManifestBytes: number
  private readonly timeout: number

  constructor (components: RegistryClientComponents, init: RegistryClientInit = {}) {
    this.source = components.source
    this.ownsDispatcher = components.dispatcher == null && components.source.dispatcherFor == null
    this.dispatcher = components.dispatcher ?? (this.ownsDispatcher ? createHttpDispatcher({ headersTimeout: init.timeout ?? DEFAULT_REGISTRY_TIMEOUT }) : undefined)
    this.maxManifestBytes = init.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES
    this.timeout = init.timeout ?? DEFAULT_REGISTRY_TIMEOUT
  }

  async stop (): Promise<void> {
    if (this.ownsDispatcher) {
      await this.dispatcher?.close()
    }
  }

  /**
   * @param baseUrl the registry's base URL, such as `https://registry-1.docker.io`
   * @throws {ImageResolveError} {@link RegistryAuthError} {@link SourceHttpError} {@link DigestMismatchError}, or what the source client throws
   */
  async resolve (baseUrl: string, ref: ImageReference, options: ResolveOptions = {}): Promise<ResolvedImage> {
    const platforms = (options.platforms ?? DEFAULT_PLATFORMS).map(parsePlatform)
    const session = { authorization: undefined as string | undefined }
    const base = baseUrl.replace(/\/+$/, '')
    const top = await this.manifest(base, ref.repository, ref.digest ?? ref.tag ?? 'latest', ref.digest, session, options)
    const picked: Array<{ digest: string, platform?: string, json: ManifestJson }> = []
    if (isIndex(top.mediaType, top.json)) {
      const entries = (top.json.manifests ?? []).slice(0, MAX_INDEX_MANIFESTS)
      for (const want of platforms) {
        const entry = entries.find(m => matchesPlatform(m, want))
        if (entry == null) {
          const have = entries.map(m => formatPlatform(m.platform)).filter(p => p !== '').join(', ')
          throw new ImageResolveError(`no manifest for platform ${want.text} in ${ref.repository} (the index has ${have === '' ? 'none' : have})`)
        }
        if (picked.some(p => p.digest === entry.digest)) {
          continue
        }
        const child = await this.manifest(base, ref.repository, entry.digest, entry.digest, session, options)
        if (isIndex(child.mediaType, child.json)) {
          throw new ImageResolveError(`${entry.digest} in ${ref.repository} is a nested index, which is not supported`)
        }
        picked.push({ digest: entry.digest, platform: want.text, json: child.json })
      }
    } else {
      picked.push({ digest: top.digest, json: top.json })
    }

    const blobs = new Map<string, ImageBlob>()
    for (const { json, digest } of picked) {
      if (json.config == null || !Array.isArray(json.layers)) {
        throw new ImageResolveError(`manifest ${digest} of ${ref.repository} has no config or layers (schema 1 manifests are not supported)`)
      }
      for (const d of [json.config, ...json.layers]) {
        checkDescriptor(d, digest)
        blobs.set(d.digest, { digest: d.digest, size: d.size, mediaType: d.mediaType ?? 'application/octet-stream', url: `${base}/v2/${ref.repository}/blobs/${d.digest}` })
      }
    }
    return {
      digest: top.digest,
      mediaType: top.mediaType,
      manifests: picked.map(p => ({ digest: p.digest, ...(p.platform != null ? { platform: p.platform } : {}) })),
      blobs: [...blobs.values()],
      ...(session.authorization != null ? { authorization: session.authorization } : {})
    }
  }

  /**
   * A fresh Authorization header for pulling from `ref`'s repository (a new token, as a
   * pull's first request would get one), or undefined when the registry asks for none.
   * Tokens are short-lived (Docker Hub's for 5 minutes): a long job asks again.
   */
  async authorization (baseUrl: string, ref: ImageReference, options: Pick<ResolveOptions, 'credentials' | 'signal'> = {}): Promise<string | undefined> {
    const session = { authorization: undefined as string | undefined }
    await this.manifest(baseUrl.replace(/\/+$/, ''), ref.repository, ref.digest ?? ref.tag ?? 'latest', ref.digest, session, options)
    return session.authorization
  }

  /** One manifest GET, answering one auth challenge; verified when asked by digest. */
  private async manifest (base: string, repository: string, reference: string, expected: string | undefined, session: { authorization: string | undefined }, options: ResolveOptions): Promise<{ digest: string, mediaType: string, json: ManifestJson }> {
    const url = `${base}/v2/${repository}/manifests/${reference}`
    const signal = AbortSignal.any([AbortSignal.timeout(this.timeout), ...(options.signal != null ? [options.signal] : [])])
    const get = async (): Promise<Awaited<ReturnType<SourceClient['fetch']>>> => this.source.fetch(url, {
      headers: { accept: MANIFEST_ACCEPT, ...(session.authorization != null ? { authorization: session.authorization } : {}) },
      signal
    })
    let res = await get()
    // bounded: one challenge answered, then the registry's answer stands
    if (res.statusCode === 401 && session.authorization == null) {
      const challenge = String(res.headers['www-authenticate'] ?? '')
      await res.dump()
      session.authorization = await this.authorize(base, challenge, repository, options.credentials, signal)
      res = await get()
    }
    if (res.statusCode !== 200) {
      const text = (await readBounded(res.body, 4096).catch(() => Buffer.alloc(0))).toString('utf8')
      if (res.statusCode === 401 || res.statusCode === 403) {
        throw new RegistryAuthError(`registry answered ${res.statusCode} for ${url}${options.credentials == null ? ' (no credentials given)' : ''}: ${text.slice(0, 300)}`)
      }
      throw new SourceHttpError(res.statusCode, `registry answered ${res.statusCode} for ${url}: ${text.slice(0, 300)}`)
    }
    const body = await readBounded(res.body, this.maxManifestBytes)
    const algorithm = expected != null ? parseDigest(expected).algorithm : 'sha256'
    const digest = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`
    if (expected != null && digest !== expected) {
      throw new DigestMismatchError(expected, digest)
    }
    let json: ManifestJson
    try {
      json = JSON.parse(body.toString('utf8')) as ManifestJson
    } catch {
      throw new ImageResolveError(`the manifest at ${url} is not JSON`)
    }
    if (json == null || typeof json !== 'object') {
      throw new ImageResolveError(`the manifest at ${url} is not a JSON object`)
    }
    const mediaType = json.mediaType ?? String(res.headers['content-type'] ?? '').split(';')[0]?.trim() ?? ''
    return { digest, mediaType, json }
  }

  /**
   * The Authorization header a challenge asks for. The realm's answers are never quoted
   * in errors: those become job errors anyone may read (`GET /api/v1/prefetch/<id>`).
   */
  private async authorize (base: string, challenge: string, repository: string, credentials: RegistryCredentials | undefined, signal: AbortSignal): Promise<string> {
    const basic = credentials != null ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` : undefined
    const scheme = challenge.split(' ', 1)[0]?.toLowerCase()
    if (scheme === 'basic') {
      if (basic == null) {
        throw new RegistryAuthError('the registry asks for basic credentials and none were given')
      }
      return basic
    }
    if (scheme !== 'bearer') {
      throw new RegistryAuthError(`the registry answered 401 with an unsupported challenge ${JSON.stringify(challenge.slice(0, 200))}`)
    }
    const params = parseChallenge(challenge)
    let realm: URL
    try {
      realm = new URL(params.realm ?? '')
    } catch {
      throw new RegistryAuthError(`the registry's token realm ${JSON.stringify(params.realm ?? '')} is not a URL`)
    }
    // the credentials go to the realm: never in clear unless the registry itself is
    // plain http (the rule of the daemon's own upstream credentials too)
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && base.startsWith('http:'))) {
      throw new RegistryAuthError(`the registry's token realm ${realm.protocol}//${realm.host} is refused: https only, for an https registry`)
    }
    if (params.service != null) {
      realm.searchParams.set('service', params.service)
    }
    realm.searchParams.set('scope', params.scope ?? `repository:${repository}:pull`)
    const dispatcher = this.dispatcher ?? this.source.dispatcherFor?.(realm)
    const res = await request(realm, {
      headers: basic != null ? { authorization: basic } : {},
      signal,
      ...(dispatcher != null ? { dispatcher } : {})
    }).catch((err: unknown) => { throw new RegistryAuthError(`cannot reach the token server ${realm.origin}: ${(err as Error).message}`) })
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => {})
      throw new RegistryAuthError(`the token server ${realm.origin} answered ${res.statusCode}${credentials == null ? ' (no credentials given)' : ''}`)
    }
    const body = await readBounded(res.body, MAX_TOKEN_RESPONSE_BYTES)
    let token: unknown
    try {
      const json = JSON.parse(body.toString('utf8')) as { token?: unknown, access_token?: unknown }
      token = json.token ?? json.access_token
    } catch {}
    if (typeof token !== 'string' || token === '' || /[\r\n]/.test(token)) {
      throw new RegistryAuthError(`the token server ${realm.origin} gave no token`)
    }
    return `Bearer ${token}`
  }
}

/** Reads a body up to `limit` bytes; more is an error (the body is destroyed). */
export async function readBounded (body: Readable | AsyncIterable<Uint8Array> & { destroy?: (err?: Error) => void }, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.byteLength
      if (size > limit) {
        throw new ImageResolveError(`response is over the ${limit} byte limit`)
      }
      chunks.push(chunk)
    }
  } finally {
    if (size > limit) {
      (body as { destroy?: () => void }).destroy?.()
    }
  }
  return Buffer.concat(chunks)
}

function parseChallenge (challenge: string): Record<string, string> {
  const params: Record<string, string> = {}
  const re = /([a-zA-Z_]+)="([^"]*)"/g
  // bounded by the header's length
  for (let m = re.exec(challenge); m != null; m = re.exec(challenge)) {
    params[(m[1] ?? '').toLowerCase()] = m[2] ?? ''
  }
  return params
}

interface Platform { os: string, architecture: string, variant?: string, text: string }

/** `os/arch[/variant]`. @throws {ImageResolveError} */
export function parsePlatform (text: string): Platform {
  const parts = text.split('/')
  if (parts.length < 2 || parts.length > 3 || parts.some(p => !/^[a-z0-9_.-]{1,32}$/.test(p))) {
    throw new ImageResolveError(`invalid platform ${JSON.stringify(text.slice(0, 100))}: expected os/arch or os/arch/variant, such as linux/amd64`)
  }
  return { os: parts[0] ?? '', architecture: parts[1] ?? '', ...(parts[2] != null ? { variant: parts[2] } : {}), text }
}

function matchesPlatform (d: Descriptor, want: Platform): boolean {
  return d.platform?.os === want.os && d.platform.architecture === want.architecture && (want.variant == null || d.platform.variant === want.variant)
}

function formatPlatform (p: Descriptor['platform']): string {
  return p?.os == null ? '' : [p.os, p.architecture, p.variant].filter(s => s != null && s !== '').join('/')
}

function isIndex (mediaType: string, json: ManifestJson): boolean {
  return mediaType === MEDIA_TYPES.ociIndex || mediaType === MEDIA_TYPES.dockerList || (Array.isArray(json.manifests) && json.layers == null)
}

function checkDescriptor (d: Descriptor, manifest: string): void {
  if (d == null || typeof d.digest !== 'string' || !Number.isSafeInteger(d.size) || d.size < 0) {
    throw new ImageResolveError(`manifest ${manifest} has a malformed descriptor`)
  }
  try {
    parseDigest(d.digest)
  } catch {
    throw new ImageResolveError(`manifest ${manifest} names an invalid digest ${JSON.stringify(String(d.digest).slice(0, 100))}`)
  }
}

export { TOKEN_REUSE_MS }

/**
 * The Authorization header a job's blob fetches carry: the one the resolve got, then a
 * new one once it is older than {@link TOKEN_REUSE_MS}, so the last layers of a long
 * job are not refused with an expired token.
 */
export class BlobAuthorization {
  private header: string | undefined
  private at = Date.now()
  private refreshing: Promise<void> | undefined
  private readonly refresh: (signal: AbortSignal) => Promise<string | undefined>

  constructor (initial: string | undefined, refresh: (signal: AbortSignal) => Promise<string | undefined>) {
    this.header = initial
    this.refresh = refresh
  }

  /** Headers for the next blob fetch. */
  async headers (signal: AbortSignal): Promise<Record<string, string>> {
    if (this.header != null && Date.now() - this.at > TOKEN_REUSE_MS) {
      // one refresh at a time, shared by the layers that start meanwhile
      this.refreshing ??= this.refresh(signal)
        .then(header => { this.header = header; this.at = Date.now() })
        .finally(() => { this.refreshing = undefined })
      await this.refreshing
    }
    return this.header != null ? { authorization: this.header } : {}
  }
}
