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
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'

export interface Blob {
  digest: string
  size: number
  mediaType: string
  /** File holding the blob's bytes */
  path: string
}

export interface GeneratedImage {
  /** The manifest's media type. @default {@link MANIFEST_V2} */
  mediaType?: string
  name: string
  tag: string
  layers: Blob[]
  config: Blob
  manifest: Buffer
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
async function writeLayer (dir: string, index: number, bytes: number): Promise<{ blob: Blob, diffId: string }> {
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
    blob: { digest: `sha256:${gzHash.hash.digest('hex')}`, size: gzHash.size, mediaType: LAYER_TAR_GZIP, path },
    diffId: `sha256:${tarHash.hash.digest('hex')}`
  }
}

/**
 * Generates a runnable-looking image (Docker schema 2) with layers of the given sizes
 * of random content, in `dir`.
 */
export async function generateImage (dir: string, name: string, tag: string, layerSizes: number[], options: { oci?: boolean, architecture?: string } = {}): Promise<GeneratedImage> {
  const layers: Blob[] = []
  const diffIds: string[] = []
  for (const [i, size] of layerSizes.entries()) {
    const { blob, diffId } = await writeLayer(dir, i, size)
    layers.push(blob)
    diffIds.push(diffId)
  }

  const config = Buffer.from(JSON.stringify({
    architecture: options.architecture ?? 'amd64',
    os: 'linux',
    created: '2026-01-01T00:00:00Z',
    config: { Cmd: ['/bin/true'], Labels: { 'org.shoal.test': name } },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created: '2026-01-01T00:00:00Z', created_by: `shoal test layer ${i}` }))
  }))
  const configPath = join(dir, 'config.json')
  await pipeline(async function * () { yield config }, createWriteStream(configPath))
  const configBlob: Blob = { digest: `sha256:${createHash('sha256').update(config).digest('hex')}`, size: config.byteLength, mediaType: options.oci === true ? OCI_CONFIG : CONFIG_V1, path: configPath }
  if (options.oci === true) {
    for (const layer of layers) {
      layer.mediaType = OCI_LAYER
    }
  }
  const mediaType = options.oci === true ? OCI_MANIFEST : MANIFEST_V2

  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: { mediaType: configBlob.mediaType, size: configBlob.size, digest: configBlob.digest },
    layers: layers.map(l => ({ mediaType: l.mediaType, size: l.size, digest: l.digest }))
  }))

  return {
    mediaType,
    name,
    tag,
    layers,
    config: configBlob,
    manifest,
    manifestDigest: `sha256:${createHash('sha256').update(manifest).digest('hex')}`,
    imageId: configBlob.digest,
    layerBytes: layers.reduce((n, l) => n + l.size, 0)
  }
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

export interface GeneratedIndex {
  name: string
  tag: string
  /** One OCI image per platform, each tagged by its manifest digest. */
  images: Array<{ platform: string, image: GeneratedImage }>
  index: Buffer
  indexDigest: string
}

/**
 * A multi-platform image: one OCI image per `linux/<arch>` (layers of the given sizes,
 * in its own directory under `dir`) and an OCI index naming them.
 */
export async function generateOciIndex (dir: string, name: string, tag: string, platforms: Array<{ architecture: string, layerSizes: number[] }>): Promise<GeneratedIndex> {
  const images: GeneratedIndex['images'] = []
  for (const p of platforms) {
    const sub = join(dir, p.architecture)
    await mkdir(sub, { recursive: true })
    const image = await generateImage(sub, name, 'unused', p.layerSizes, { oci: true, architecture: p.architecture })
    image.tag = image.manifestDigest
    images.push({ platform: `linux/${p.architecture}`, image })
  }
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: images.map(({ platform, image }) => ({
      mediaType: OCI_MANIFEST,
      digest: image.manifestDigest,
      size: image.manifest.byteLength,
      platform: { os: 'linux', architecture: platform.split('/')[1] }
    }))
  }))
  return { name, tag, images, index, indexDigest: `sha256:${createHash('sha256').update(index).digest('hex')}` }
}
