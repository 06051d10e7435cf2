import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { pack } from 'tar-stream'

export const MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json'
export const CONFIG_V1 = 'application/vnd.docker.container.image.v1+json'
export const LAYER_TAR_GZIP = 'application/vnd.docker.image.rootfs.diff.tar.gzip'
export const MANIFEST_LIST_V2 = 'application/vnd.docker.distribution.manifest.list.v2+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'

/** Which media types an image uses: Docker's (schema 2, manifest list) or the OCI image spec's. */
export type ImageFormat = 'docker' | 'oci'

export interface ImageOptions {
  /** @default 'docker' */
  format?: ImageFormat
  /** @default 'amd64' */
  architecture?: string
}

export interface Blob {
  digest: string
  size: number
  mediaType: string
  /** File holding the blob's bytes */
  path: string
}

export interface GeneratedImage {
  name: string
  tag: string
  layers: Blob[]
  config: Blob
  manifest: Buffer
  /** The manifest's media type: Docker schema 2 or an OCI image manifest */
  manifestType: string
  manifestDigest: string
  /** What `docker image inspect --format {{.Id}}` reports: the config digest. */
  imageId: string
  /** Sum of layer sizes (compressed, as pulled) */
  layerBytes: number
}

class Hasher extends Transform {
  readonly hash = createHash('sha256')
  size = 0
  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk)
    this.size += chunk.byteLength
    cb(null, chunk)
  }
}

/**
 * Writes one gzip'd tar layer of random (incompressible) content, streaming to disk.
 * Returns the blob and its diff id (digest of the uncompressed tar).
 */
async function writeLayer (dir: string, index: number, bytes: number, mediaType: string): Promise<{ blob: Blob, diffId: string }> {
  const tar = pack()
  const tarHash = new Hasher()
  const gzHash = new Hasher()
  const path = join(dir, `layer-${index}.tar.gz`)
  const done = pipeline(tar, tarHash, createGzip({ level: 1 }), gzHash, createWriteStream(path))

  const fileSize = Math.min(bytes, 4 * 1024 * 1024)
  let remaining = bytes
  for (let f = 0; remaining > 0; f++) {
    const size = Math.min(fileSize, remaining)
    await new Promise<void>((resolve, reject) => {
      tar.entry({ name: `shoal-layer-${index}/file-${f}.bin`, size, mtime: new Date(0) }, randomBytes(size), (err) => {
        if (err != null) {
          reject(err)
        } else {
          resolve()
        }
      })
    })
    remaining -= size
  }
  tar.finalize()
  await done
  return {
    blob: { digest: `sha256:${gzHash.hash.digest('hex')}`, size: gzHash.size, mediaType, path },
    diffId: `sha256:${tarHash.hash.digest('hex')}`
  }
}

/**
 * Generates a runnable-looking image (Docker schema 2) with layers of the given sizes
 * of random content, in `dir`.
 */
export async function generateImage (dir: string, name: string, tag: string, layerSizes: number[], options: ImageOptions = {}): Promise<GeneratedImage> {
  const oci = options.format === 'oci'
  const architecture = options.architecture ?? 'amd64'
  const layers: Blob[] = []
  const diffIds: string[] = []
  for (const [i, size] of layerSizes.entries()) {
    const { blob, diffId } = await writeLayer(dir, i, size, oci ? OCI_LAYER_GZIP : LAYER_TAR_GZIP)
    layers.push(blob)
    diffIds.push(diffId)
  }

  const config = Buffer.from(JSON.stringify({
    architecture,
    os: 'linux',
    created: '2026-01-01T00:00:00Z',
    config: { Cmd: ['/bin/true'], Labels: { 'org.shoal.test': name, 'org.shoal.arch': architecture } },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created: '2026-01-01T00:00:00Z', created_by: `shoal test layer ${i}` }))
  }))
  const configPath = join(dir, `config-${architecture}.json`)
  await pipeline(async function * () { yield config }, createWriteStream(configPath))
  const configBlob: Blob = { digest: `sha256:${createHash('sha256').update(config).digest('hex')}`, size: config.byteLength, mediaType: oci ? OCI_CONFIG : CONFIG_V1, path: configPath }

  const manifestType = oci ? OCI_MANIFEST : MANIFEST_V2
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: manifestType,
    config: { mediaType: configBlob.mediaType, size: configBlob.size, digest: configBlob.digest },
    layers: layers.map(l => ({ mediaType: l.mediaType, size: l.size, digest: l.digest }))
  }))

  return {
    name,
    tag,
    layers,
    config: configBlob,
    manifest,
    manifestType,
    manifestDigest: `sha256:${createHash('sha256').update(manifest).digest('hex')}`,
    imageId: configBlob.digest,
    layerBytes: layers.reduce((n, l) => n + l.size, 0)
  }
}

/** An image for several platforms: an OCI index or a Docker manifest list over one image per platform. */
export interface MultiPlatformImage {
  name: string
  tag: string
  format: ImageFormat
  /** One image per architecture, in the order asked for */
  images: GeneratedImage[]
  index: Buffer
  indexType: string
  indexDigest: string
}

/**
 * Generates one image per architecture (each with its own random layers, in its own
 * subdirectory of `dir`) and the index (OCI) or manifest list (Docker) naming them.
 */
export async function generateMultiPlatformImage (dir: string, name: string, tag: string, layerSizes: number[], options: { format: ImageFormat, architectures: string[] }): Promise<MultiPlatformImage> {
  const images: GeneratedImage[] = []
  for (const architecture of options.architectures) {
    const sub = join(dir, architecture)
    await mkdir(sub, { recursive: true })
    images.push(await generateImage(sub, name, tag, layerSizes, { format: options.format, architecture }))
  }
  const indexType = options.format === 'oci' ? OCI_INDEX : MANIFEST_LIST_V2
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: indexType,
    manifests: images.map((image, i) => ({
      mediaType: image.manifestType,
      size: image.manifest.byteLength,
      digest: image.manifestDigest,
      platform: { architecture: options.architectures[i], os: 'linux' }
    }))
  }))
  return { name, tag, format: options.format, images, index, indexType, indexDigest: `sha256:${createHash('sha256').update(index).digest('hex')}` }
}

/** Writes `bytes` of random (incompressible) content to `path`, streaming, and returns it as a blob. */
export async function writeRandomBlob (path: string, bytes: number, mediaType = 'application/octet-stream'): Promise<Blob> {
  const hash = createHash('sha256')
  const chunk = 4 * 1024 * 1024
  await pipeline(async function * () {
    for (let done = 0; done < bytes; done += chunk) {
      const data = randomBytes(Math.min(chunk, bytes - done))
      hash.update(data)
      yield data
    }
  }, createWriteStream(path))
  return { digest: `sha256:${hash.digest('hex')}`, size: bytes, mediaType, path }
}
