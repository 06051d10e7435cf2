import { createHash } from 'node:crypto'
import { request } from 'undici'

export interface PullResult {
  ms: number
  blobs: number
  bytes: number
}

const ACCEPT = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json'
].join(', ')

async function fetchBlob (mirror: string, name: string, digest: string, signal: AbortSignal): Promise<number> {
  const res = await request(`${mirror}/v2/${name}/blobs/${digest}`, { signal })
  if (res.statusCode !== 200) {
    await res.body.dump()
    throw new Error(`blob ${digest}: ${res.statusCode}`)
  }
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).byteLength
  }
  if (`sha256:${hash.digest('hex')}` !== digest) {
    throw new Error(`blob ${digest} did not verify`)
  }
  return bytes
}

/**
 * Pulls an image through a registry mirror the way a container runtime does: `/v2/`,
 * the manifest, then the config and layers (three at a time, as dockerd does), each
 * checked against its digest. Nothing is kept.
 */
export async function pullImage (mirror: string, name: string, tag: string, options: { timeoutMs?: number } = {}): Promise<PullResult> {
  const signal = AbortSignal.timeout(options.timeoutMs ?? 300_000)
  const started = performance.now()
  const ping = await request(`${mirror}/v2/`, { signal })
  await ping.body.dump()
  const res = await request(`${mirror}/v2/${name}/manifests/${tag}`, { headers: { accept: ACCEPT }, signal })
  if (res.statusCode !== 200) {
    throw new Error(`manifest ${name}:${tag}: ${res.statusCode} ${await res.body.text()}`)
  }
  const manifest = await res.body.json() as { config: { digest: string }, layers: Array<{ digest: string }> }
  const queue = [manifest.config.digest, ...manifest.layers.map(l => l.digest)]
  let bytes = 0
  const worker = async (): Promise<void> => {
    for (let digest = queue.shift(); digest != null; digest = queue.shift()) {
      bytes += await fetchBlob(mirror, name, digest, signal)
    }
  }
  await Promise.all([worker(), worker(), worker()])
  return { ms: performance.now() - started, blobs: 1 + manifest.layers.length, bytes }
}
