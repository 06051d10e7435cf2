/**
 * The pull side of the OCI Distribution API through the mirror, with real parts: Debian's
 * docker-registry holding multi-platform images (an OCI index and a Docker manifest
 * list), a supernode and a daemon, pulled by a real dockerd (registry-mirrors) and by
 * containerd's ctr (hosts.toml) and skopeo (registries.conf); curl Range requests; HEADs; a batch of malformed
 * requests; manifests by digest from several clients.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startContainerd, writeHostsToml, type Containerd } from '../harness/containerd.ts'
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.ts'
import { startDockerd, type Dockerd } from '../harness/dockerd.ts'
import { generateMultiPlatformImage, type MultiPlatformImage, type Blob } from '../harness/image.ts'
import { sample, scrape } from '../harness/metrics.ts'
import { makeTestDir, removeTestDir, run } from '../harness/processes.ts'
import { pushMultiPlatformImage, startDockerRegistry, type Registry } from '../harness/registry.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const MiB = 1024 * 1024
const skip = requireReal({ binaries: ['dockerd', 'docker-registry', 'containerd', 'ctr', 'curl', 'skopeo'], root: true })

interface CurlAnswer { status: number, headers: Record<string, string>, body: Buffer }

/** One request with the curl binary; the body into a file, read back. */
async function curl (dir: string, url: string, args: string[] = []): Promise<CurlAnswer> {
  const out = join(dir, `curl-${Math.random().toString(36).slice(2)}`)
  const res = await run('curl', ['-sS', '--max-time', '60', '-o', out, '-D', `${out}.headers`, ...args, url], { timeoutMs: 90_000 })
  if (res.code !== 0) {
    throw new Error(`curl ${args.join(' ')} ${url} failed (${res.code}): ${res.stderr}`)
  }
  const lines = (await readFile(`${out}.headers`, 'utf8')).split('\r\n')
  const status = Number(/^HTTP\/[\d.]+ (\d+)/.exec(lines[0] ?? '')?.[1])
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':')
    if (i > 0) {
      headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim()
    }
  }
  const body = await readFile(out).catch(() => Buffer.alloc(0))
  return { status, headers, body }
}

describe.skipIf(skip != null)(`the OCI pull API through the mirror${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let registry: Registry
  let proxy: CountingProxy
  let supernode: SupernodeHandle
  let daemon: DaemonHandle
  let dockerd: Dockerd
  let containerd: Containerd
  let oci: MultiPlatformImage
  let list: MultiPlatformImage
  /** The registry as image references name it (the counting proxy's host:port) */
  let registryHost: string
  let hostsDir: string

  beforeAll(async () => {
    dir = await makeTestDir('oci')
    registry = await startDockerRegistry(join(dir, 'registry'))
    proxy = await startCountingProxy(registry.url)
    registryHost = new URL(proxy.url).host
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [proxy.url], pieceSize: MiB })
    daemon = await startDaemon({ dir, name: 'host-a', registry: proxy.url, supernode: supernode.url })
    dockerd = await startDockerd(join(dir, 'dockerd'), daemon.url)
    containerd = await startContainerd(join(dir, 'containerd'))
    hostsDir = join(dir, 'certs.d')
    await writeHostsToml(hostsDir, registryHost, daemon.url)
    oci = await generateMultiPlatformImage(await mkdtemp(join(dir, 'img-')), 'library/shoal-oci', 'v1', [2 * MiB + 123, MiB], { format: 'oci', architectures: ['amd64', 'arm64'] })
    list = await generateMultiPlatformImage(await mkdtemp(join(dir, 'img-')), 'library/shoal-list', 'v1', [MiB + 77], { format: 'docker', architectures: ['amd64', 'arm64'] })
    await pushMultiPlatformImage(registry.url, oci)
    await pushMultiPlatformImage(registry.url, list)
  })

  afterAll(async () => {
    await dockerd?.stop().catch(() => {})
    await containerd?.stop().catch(() => {})
    await daemon?.proc.stop()
    await supernode?.proc.stop()
    await proxy?.stop()
    await registry?.stop()
    await removeTestDir(dir)
  })

  const amd64 = (image: MultiPlatformImage): MultiPlatformImage['images'][number] => image.images[0]!
  const arm64 = (image: MultiPlatformImage): MultiPlatformImage['images'][number] => image.images[1]!
  const blobGets = (blob: Blob): number => proxy.blobGets.get(blob.digest) ?? 0

  it('dockerd pulls an OCI index and a Docker manifest list, getting the amd64 image of each', async () => {
    for (const image of [oci, list]) {
      const ref = `${image.name.replace(/^library\//, '')}:${image.tag}`
      await dockerd.pull(ref)
      expect(await dockerd.imageId(ref)).toBe(amd64(image).imageId)
      for (const layer of amd64(image).layers) {
        expect(blobGets(layer), `registry GETs of ${layer.digest}`).toBe(1)
      }
      for (const layer of arm64(image).layers) {
        expect(blobGets(layer)).toBe(0)
      }
    }
    const metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_served_bytes_total')).toBeGreaterThanOrEqual(amd64(oci).layerBytes + amd64(list).layerBytes)
  })

  it('ctr pulls both through hosts.toml, the blobs from the daemon rather than the registry', async () => {
    const before = await scrape(`${daemon.url}/metrics`)
    for (const image of [oci, list]) {
      const ref = `${registryHost}/${image.name}:${image.tag}`
      const log = await containerd.pull(ref, hostsDir, { debug: true })
      // ctr --debug logs every request it sends: all of them to the mirror, with ?ns=
      const urls = log.split('\n').filter(l => l.includes('msg="do request"')).map(l => /url="([^"]+)"/.exec(l)?.[1])
      expect(urls.length).toBeGreaterThanOrEqual(2 + amd64(image).layers.length)
      for (const url of urls) {
        expect(url).toMatch(new RegExp(`^${daemon.url}/v2/${image.name}/(manifests|blobs)/[^?]+\\?ns=${encodeURIComponent(registryHost)}$`))
      }
      expect(await containerd.imageTarget(ref)).toBe(image.indexDigest)
      const content = await containerd.contentDigests()
      for (const blob of [...amd64(image).layers, amd64(image).config]) {
        expect(content).toContain(blob.digest)
      }
      // a pull that went around the mirror would have made the registry send them again
      for (const layer of amd64(image).layers) {
        expect(blobGets(layer), `registry GETs of ${layer.digest}`).toBe(1)
      }
    }
    const after = await scrape(`${daemon.url}/metrics`)
    const served = sample(after, 'shoal_dfget_served_bytes_total') - sample(before, 'shoal_dfget_served_bytes_total')
    expect(served).toBeGreaterThanOrEqual(amd64(oci).layerBytes + amd64(list).layerBytes)
  })

  it('skopeo pulls through registries.conf [[registry.mirror]], as docs/runtimes.md has it', async () => {
    const conf = join(dir, 'registries.conf')
    await writeFile(conf, [
      '[[registry]]',
      `prefix = "${registryHost}"`,
      `location = "${registryHost}"`,
      'insecure = true',
      '',
      '[[registry.mirror]]',
      `location = "${new URL(daemon.url).host}"`,
      'insecure = true',
      ''
    ].join('\n'))
    const before = sample(await scrape(`${daemon.url}/metrics`), 'shoal_dfget_served_bytes_total')
    const out = join(dir, 'skopeo-out')
    const res = await run('skopeo', ['--registries-conf', conf, '--debug', 'copy', '--override-arch', 'amd64', '--override-os', 'linux', `docker://${registryHost}/${oci.name}:${oci.tag}`, `dir:${out}`], { timeoutMs: 120_000 })
    expect(res.code, res.stderr.slice(-2000)).toBe(0)
    expect(res.stderr).toContain(`Trying to access \\"${new URL(daemon.url).host}/${oci.name}:${oci.tag}\\"`)
    for (const layer of amd64(oci).layers) {
      expect((await readFile(join(out, layer.digest.slice('sha256:'.length)))).byteLength).toBe(layer.size)
      expect(blobGets(layer), `registry GETs of ${layer.digest}`).toBe(1)
    }
    const after = sample(await scrape(`${daemon.url}/metrics`), 'shoal_dfget_served_bytes_total')
    expect(after - before).toBeGreaterThanOrEqual(amd64(oci).layerBytes)
  })

  it('answers curl -r with the exact bytes of the blob, 206, and 416 past the end', async () => {
    // the arm64 layer: nobody pulled it, so the first range comes through the swarm
    const layer = arm64(oci).layers[0]!
    const data = await readFile(layer.path)
    const url = `${daemon.url}/v2/${oci.name}/blobs/${layer.digest}`
    const cases: Array<[string, number, number]> = [['0-', 0, data.byteLength - 1], ['1000000-1500000', 1_000_000, 1_500_000], ['-4096', data.byteLength - 4096, data.byteLength - 1]]
    for (const [range, start, end] of cases) {
      const res = await curl(dir, url, ['-r', range])
      expect(res.status, range).toBe(206)
      expect(res.headers['content-range'], range).toBe(`bytes ${start}-${end}/${data.byteLength}`)
      expect(res.headers['accept-ranges']).toBe('bytes')
      expect(res.body.equals(data.subarray(start, end + 1)), `bytes of ${range}`).toBe(true)
    }
    const past = await curl(dir, url, ['-r', `${data.byteLength}-`])
    expect(past.status).toBe(416)
    expect(past.headers['content-range']).toBe(`bytes */${data.byteLength}`)
    expect(JSON.parse(past.body.toString()).errors[0].code).toBe('RANGE_INVALID')
    expect(blobGets(layer)).toBe(1)
  })

  it('answers HEAD on blobs held and not held, and on manifests by tag and by digest', async () => {
    const held = amd64(oci).layers[0]!
    const heldHead = await curl(dir, `${daemon.url}/v2/${oci.name}/blobs/${held.digest}`, ['-I'])
    expect(heldHead.status).toBe(200)
    expect(heldHead.headers['content-length']).toBe(String(held.size))
    expect(heldHead.headers['docker-content-digest']).toBe(held.digest)
    expect(heldHead.headers['accept-ranges']).toBe('bytes')

    const notHeld = arm64(list).layers[0]!
    const notHeldHead = await curl(dir, `${daemon.url}/v2/${list.name}/blobs/${notHeld.digest}`, ['-I'])
    expect(notHeldHead.status).toBe(200)
    expect(notHeldHead.headers['content-length']).toBe(String(notHeld.size))
    expect(notHeldHead.headers['docker-content-digest']).toBe(notHeld.digest)
    expect(blobGets(notHeld), 'a HEAD fetches no blob body').toBe(0)

    const accept = ['-H', `Accept: ${[oci.indexType, amd64(oci).manifestType].join(', ')}`]
    const byTag = await curl(dir, `${daemon.url}/v2/${oci.name}/manifests/${oci.tag}`, ['-I', ...accept])
    expect(byTag.status).toBe(200)
    expect(byTag.headers['content-type']).toBe(oci.indexType)
    expect(byTag.headers['docker-content-digest']).toBe(oci.indexDigest)
    expect(byTag.headers['content-length']).toBe(String(oci.index.byteLength))

    for (const image of [oci, list]) {
      const byDigest = await curl(dir, `${daemon.url}/v2/${image.name}/manifests/${amd64(image).manifestDigest}`, ['-I'])
      expect(byDigest.status).toBe(200)
      expect(byDigest.headers['content-type']).toBe(amd64(image).manifestType)
      expect(byDigest.headers['docker-content-digest']).toBe(amd64(image).manifestDigest)
      expect(byDigest.headers['content-length']).toBe(String(amd64(image).manifest.byteLength))
    }
    const listByTag = await curl(dir, `${daemon.url}/v2/${list.name}/manifests/${list.tag}`, ['-H', `Accept: ${list.indexType}`])
    expect(listByTag.headers['content-type']).toBe(list.indexType)
    expect(listByTag.body.equals(list.index)).toBe(true)
  })

  it('answers every malformed request with its 4xx and OCI error code, decided by the mirror, and keeps serving', async () => {
    const digest = amd64(oci).layers[0]!.digest
    const cases: Array<{ method?: string, path: string, headers?: Record<string, string>, status: number, code: string }> = [
      { path: `/v2/${'a'.repeat(6000)}/manifests/v1`, status: 400, code: 'NAME_INVALID' },
      { path: `/v2/${'a'.repeat(6000)}/blobs/${digest}`, status: 400, code: 'NAME_INVALID' },
      { path: `/v2/${'ab/'.repeat(100)}c/tags/list`, status: 400, code: 'NAME_INVALID' },
      { path: '/v2/Library/Shoal/manifests/v1', status: 400, code: 'NAME_INVALID' },
      { path: '/v2/library//shoal/manifests/v1', status: 400, code: 'NAME_INVALID' },
      { path: `/v2/lib..rary/blobs/${digest}`, status: 400, code: 'NAME_INVALID' },
      { path: `/v2/${oci.name}/blobs/sha256:abc`, status: 400, code: 'DIGEST_INVALID' },
      { path: `/v2/${oci.name}/blobs/md5:${'a'.repeat(32)}`, status: 400, code: 'DIGEST_INVALID' },
      { path: `/v2/${oci.name}/blobs/sha256:${'A'.repeat(64)}`, status: 400, code: 'DIGEST_INVALID' },
      { path: `/v2/${oci.name}/manifests/sha256:${'0'.repeat(63)}`, status: 400, code: 'DIGEST_INVALID' },
      { path: `/v2/${oci.name}/manifests/${'t'.repeat(129)}`, status: 400, code: 'TAG_INVALID' },
      { path: `/v2/${oci.name}/manifests/.hidden`, status: 400, code: 'TAG_INVALID' },
      { path: `/v2/${oci.name}/blobs/${digest}`, headers: { range: 'bytes=9-2' }, status: 400, code: 'RANGE_INVALID' },
      { path: `/v2/${oci.name}/blobs/${digest}`, headers: { range: 'lines=1-2' }, status: 400, code: 'RANGE_INVALID' },
      { path: `/v2/${oci.name}/blobs/${digest}`, headers: { range: 'bytes=x-' }, status: 400, code: 'RANGE_INVALID' },
      { method: 'PUT', path: `/v2/${oci.name}/manifests/v2`, status: 405, code: 'UNSUPPORTED' },
      { method: 'DELETE', path: `/v2/${oci.name}/manifests/${oci.indexDigest}`, status: 405, code: 'UNSUPPORTED' },
      { method: 'DELETE', path: `/v2/${oci.name}/blobs/${digest}`, status: 405, code: 'UNSUPPORTED' },
      { method: 'POST', path: `/v2/${oci.name}/blobs/uploads/`, status: 405, code: 'UNSUPPORTED' },
      { method: 'PATCH', path: `/v2/${oci.name}/blobs/uploads/some-id`, status: 405, code: 'UNSUPPORTED' }
    ]
    const seen = proxy.requests.length
    for (const c of cases) {
      const res = await request(`${daemon.url}${c.path}`, { method: (c.method ?? 'GET') as 'GET', headers: c.headers ?? {}, signal: AbortSignal.timeout(10_000) })
      const body = await res.body.text()
      const what = `${c.method ?? 'GET'} ${c.path.slice(0, 60)} ${JSON.stringify(c.headers ?? {})}`
      expect(res.statusCode, what).toBe(c.status)
      expect(String(res.headers['content-type']), what).toContain('application/json')
      expect((JSON.parse(body) as { errors: Array<{ code: string }> }).errors[0]?.code, what).toBe(c.code)
    }
    expect(proxy.requests.slice(seen), 'the registry was asked nothing').toEqual([])

    const good = await curl(dir, `${daemon.url}/v2/${list.name}/manifests/${list.tag}`, ['-H', `Accept: ${list.indexType}`])
    expect(good.status).toBe(200)
    expect(good.body.equals(list.index)).toBe(true)
  })

  it('sends a manifest by digest to the registry once for many clients', async () => {
    const manifest = arm64(oci)
    const path = `/v2/${oci.name}/manifests/${manifest.manifestDigest}`
    const answers = await Promise.all(Array.from({ length: 8 }, async (_, i) => curl(dir, `${daemon.url}${path}`, i % 2 === 0 ? ['-H', `Accept: ${manifest.manifestType}`] : [])))
    answers.push(await curl(dir, `${daemon.url}${path}`, ['-I']), await curl(dir, `${daemon.url}${path}`))
    for (const res of answers) {
      expect(res.status).toBe(200)
      expect(res.headers['docker-content-digest']).toBe(manifest.manifestDigest)
      expect(res.headers['content-type']).toBe(manifest.manifestType)
    }
    for (const res of answers.filter((_, i) => i !== 8)) {
      expect(res.body.equals(manifest.manifest)).toBe(true)
    }
    const reached = proxy.requests.filter(r => r.includes(`/manifests/${manifest.manifestDigest}`))
    // the content once (the supernode's GET), and one authorization HEAD for these
    // clients' credentials (none), as for a blob
    expect(reached.filter(r => r.startsWith('GET '))).toEqual([`GET ${path}`])
    expect(reached.filter(r => r.startsWith('HEAD '))).toEqual([`HEAD ${path}`])
    const metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_manifest_cache_total', { result: 'hit' })).toBeGreaterThanOrEqual(9)
  })
})
