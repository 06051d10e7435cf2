import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { HealthGateError } from '../errors.ts'
import { sh, type Executor } from '../exec/index.ts'

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json'
].join(', ')

/** Waits for the daemon's /healthz to answer 200, polling from the host itself. */
export async function waitHealthy (exec: Executor, daemonUrl: string, options: { timeout: number, signal?: AbortSignal }): Promise<void> {
  const deadline = Date.now() + options.timeout
  let last = ''
  while (Date.now() < deadline) {
    const res = await exec.run(`curl -fsS -m 2 ${sh(`${daemonUrl}/healthz`)}`, { timeout: 10_000, ...(options.signal != null ? { signal: options.signal } : {}) })
    if (res.code === 0) {
      return
    }
    last = res.stderr.trim()
    await sleep(500, undefined, options.signal != null ? { signal: options.signal } : {})
  }
  throw new HealthGateError(`the daemon's /healthz at ${daemonUrl} did not answer within ${options.timeout} ms${last !== '' ? `: ${last}` : ''}`)
}

export interface PullSummary {
  image: string
  blobs: number
  bytes: number
}

async function fetchManifest (exec: Executor, url: string, signal?: AbortSignal): Promise<{ body: Buffer, type: string }> {
  // base64: the exact bytes, to check the digest
  const res = await exec.run(`curl -fsS -m 30 -H ${sh(`Accept: ${ACCEPT}`)} -D /dev/stderr ${sh(url)} | base64 -w0`, { timeout: 40_000, ...(signal != null ? { signal } : {}) })
  const body = Buffer.from(res.stdout.trim(), 'base64')
  const type = /^content-type:\s*([^;\r\n]+)/im.exec(res.stderr)?.[1]?.trim() ?? ''
  if (res.code !== 0 || body.length === 0) {
    throw new HealthGateError(`fetching ${url} through the mirror failed: ${res.stderr.split('\n').find(l => l.startsWith('curl:')) ?? res.stderr.trim().split('\n')[0] ?? `exit ${res.code}`}`)
  }
  return { body, type }
}

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

/**
 * A real pull of `image` (name:tag or name@digest on the daemon's default registry)
 * through the mirror, from the host: the manifest (an index resolved to linux/amd64),
 * then every blob, each hashed on the host and compared with its digest. Blobs go to
 * a temporary file on the host, never into memory here.
 */
export async function testPull (exec: Executor, mirror: string, image: string, options: { timeout: number, signal?: AbortSignal }): Promise<PullSummary> {
  const at = image.includes('@') ? image.indexOf('@') : image.lastIndexOf(':')
  const name = image.slice(0, at)
  const ref = image.slice(at + 1)
  const signal = AbortSignal.any([AbortSignal.timeout(options.timeout), ...(options.signal != null ? [options.signal] : [])])
  let { body, type } = await fetchManifest(exec, `${mirror}/v2/${name}/manifests/${ref}`, signal)
  if (ref.startsWith('sha256:') && digestOf(body) !== ref) {
    throw new HealthGateError(`the manifest of ${image} hashes to ${digestOf(body)}`)
  }
  let manifest = JSON.parse(body.toString('utf8')) as { mediaType?: string, manifests?: Array<{ digest: string, platform?: { os?: string, architecture?: string } }>, config?: { digest: string, size: number }, layers?: Array<{ digest: string, size: number }> }
  if (manifest.manifests != null) {
    const pick = manifest.manifests.find(m => m.platform?.os === 'linux' && m.platform.architecture === 'amd64') ?? manifest.manifests[0]
    if (pick == null) {
      throw new HealthGateError(`the index of ${image} lists no manifest`)
    }
    ({ body, type } = await fetchManifest(exec, `${mirror}/v2/${name}/manifests/${pick.digest}`, signal))
    if (digestOf(body) !== pick.digest) {
      throw new HealthGateError(`the manifest ${pick.digest} of ${image} hashes to ${digestOf(body)}`)
    }
    manifest = JSON.parse(body.toString('utf8')) as typeof manifest
  }
  void type
  const blobs = [...(manifest.config != null ? [manifest.config] : []), ...(manifest.layers ?? [])]
  if (blobs.length === 0) {
    throw new HealthGateError(`the manifest of ${image} lists no blobs`)
  }
  // one command for every blob: each fetched to a temporary file and hashed there
  const script = [
    't=$(mktemp) || exit 1',
    'trap \'rm -f "$t"\' EXIT',
    ...blobs.map(b => `curl -fsS -m ${Math.ceil(options.timeout / 1000)} -L -o "$t" ${sh(`${mirror}/v2/${name}/blobs/${b.digest}`)} || { echo "FAIL ${b.digest}"; exit 1; }; echo "${b.digest} sha256:$(sha256sum "$t" | cut -d' ' -f1) $(stat -c %s "$t")"`)
  ].join('\n')
  const res = await exec.run(script, { timeout: options.timeout + 5_000, signal })
  if (res.code !== 0) {
    throw new HealthGateError(`pulling ${image} through the mirror failed: ${res.stdout.split('\n').find(l => l.startsWith('FAIL')) ?? ''} ${res.stderr.trim()}`.trim())
  }
  let bytes = 0
  for (const line of res.stdout.trim().split('\n')) {
    const [want, got, size] = line.split(' ')
    if (want !== got) {
      throw new HealthGateError(`blob ${want} of ${image} came through the mirror as ${got}`)
    }
    bytes += Number(size)
  }
  return { image, blobs: blobs.length, bytes }
}
