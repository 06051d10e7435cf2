/**
 * Preheat with real parts: Debian's docker-registry (plain, and behind htpasswd) holds
 * an OCI multi-platform image; the supernode is asked over HTTP, with the operator's
 * token, to pull an image into its cache; a daemon then gets the layers from the
 * supernode without the registry serving them again.
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.ts'
import { generateImage, generateMultiPlatformImage, type GeneratedImage, type MultiPlatformImage } from '../harness/image.ts'
import { postJob, waitForJob } from '../harness/jobs.ts'
import { daemonBytes, sample, scrape } from '../harness/metrics.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { pushMultiPlatformImage, startDockerRegistry, type Registry } from '../harness/registry.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startTokenServer, type TokenServer } from '../harness/token-server.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const MiB = 1024 * 1024
const skip = requireReal({ binaries: ['docker-registry', 'openssl'] })

describe.skipIf(skip != null)(`supernode preheat${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let registry: Registry
  let privateRegistry: Registry
  let tokenRegistry: Registry
  let tokens: TokenServer
  let proxy: CountingProxy
  let supernode: SupernodeHandle
  let daemon: DaemonHandle
  let multi: MultiPlatformImage
  let broken: GeneratedImage
  let secret: GeneratedImage
  let tokenSecret: GeneratedImage
  const token = randomBytes(24).toString('hex')
  const auth = { authorization: `Bearer ${token}` }
  const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
  let host: string

  beforeAll(async () => {
    dir = await makeTestDir('preheat')
    registry = await startDockerRegistry(join(dir, 'registry'))
    proxy = await startCountingProxy(registry.url)
    privateRegistry = await startDockerRegistry(join(dir, 'private'), { htpasswd: { ops: 'op-secret' }, pushAuthorization: () => basic('ops', 'op-secret') })
    await mkdir(join(dir, 'token-registry'), { recursive: true })
    tokens = await startTokenServer(join(dir, 'token-registry'), { users: { ops: { password: 'op-secret', repositories: ['team/secret'] } } })
    const t = tokens
    tokenRegistry = await startDockerRegistry(join(dir, 'token-registry'), {
      token: { realm: t.realm, service: t.service, issuer: t.issuer, rootCertBundle: t.certFile },
      pushAuthorization: (name) => `Bearer ${t.mint('pusher', [{ type: 'repository', name, actions: ['pull', 'push'] }])}`
    })
    await writeFile(join(dir, 'token'), `${token}\n`, { mode: 0o600 })
    supernode = await startSupernode({
      dir: join(dir, 'supernode'),
      allowSource: [proxy.url, privateRegistry.url, tokenRegistry.url],
      pieceSize: MiB,
      extraArgs: ['--preheat-token-file', join(dir, 'token')]
    })
    daemon = await startDaemon({ dir, name: 'host', registry: proxy.url, supernode: supernode.url })
    host = new URL(proxy.url).host

    multi = await generateMultiPlatformImage(join(dir, 'multi'), 'library/multi', 'v1', [2 * MiB + 11, MiB], { format: 'oci', architectures: ['amd64', 'arm64'] })
    await pushMultiPlatformImage(registry.url, multi)
    broken = await generateImage(await mkdtemp(join(dir, 'img-')), 'library/broken', 'v1', [MiB + 1, 2 * MiB + 3])
    await registry.push(broken)
    secret = await generateImage(await mkdtemp(join(dir, 'img-')), 'team/secret', 'v1', [2 * MiB + 9])
    await privateRegistry.push(secret)
    // its own layers, so its blobs are fetched with the bearer token, not found in the cache
    tokenSecret = await generateImage(await mkdtemp(join(dir, 'img-')), 'team/secret', 'v2', [MiB + 99])
    tokenSecret.tag = 'v1'
    await tokenRegistry.push(tokenSecret)
  })

  afterAll(async () => {
    await daemon?.proc.stop()
    await supernode?.proc.stop()
    await proxy?.stop()
    await registry?.stop()
    await privateRegistry?.stop()
    await tokenRegistry?.stop()
    await tokens?.stop()
    await removeTestDir(dir)
  })

  it('refuses jobs without the operator token, and malformed ones', async () => {
    const body = { image: `${host}/library/multi:v1` }
    const none = await postJob(`${supernode.url}/api/v1/preheat`, body)
    expect(none.status).toBe(401)
    expect(none.json.errors[0]?.message).toMatch(/Bearer/)
    const wrong = await postJob(`${supernode.url}/api/v1/preheat`, body, { authorization: 'Bearer not-the-token-at-all' })
    expect(wrong.status).toBe(401)
    const list = await request(`${supernode.url}/api/v1/preheat`, { signal: AbortSignal.timeout(10_000) })
    expect(list.statusCode).toBe(401)
    await list.body.dump()
    for (const bad of [{}, { image: 'Not A Reference' }, { image: 'alpine', urls: ['http://x/y'] }, { image: 'alpine', platforms: ['linux'] }]) {
      const res = await postJob(`${supernode.url}/api/v1/preheat`, bad, auth)
      expect(res.status, JSON.stringify(bad)).toBe(400)
      expect(res.json.errors[0]?.code).toBe('BAD_REQUEST')
    }
    const refused = await postJob(`${supernode.url}/api/v1/preheat`, { image: 'registry.example.com/team/app:1' }, auth)
    expect(refused.status).toBe(403)
    expect(refused.json.errors[0]?.message).toMatch(/registry\.example\.com/)
    expect(proxy.blobGets.size).toBe(0)
  })

  it('pulls only the requested platform of an OCI index into its cache, which then serves a daemon', async () => {
    const created = await postJob(`${supernode.url}/api/v1/preheat`, { image: `${host}/library/multi:v1`, platforms: ['linux/arm64'] }, auth)
    expect(created.status).toBe(202)
    expect(created.json.state).toBe('running')
    const job = await waitForJob(`${supernode.url}/api/v1/preheat/${created.json.id}`, auth)
    expect(job.state, job.error).toBe('succeeded')

    const arm = multi.images[1]!
    const amd = multi.images[0]!
    const armBlobs = [arm.config, ...arm.layers]
    expect(job.layers.map(l => l.digest).sort()).toEqual(armBlobs.map(b => b.digest).sort())
    for (const layer of job.layers) {
      expect(layer.state).toBe('succeeded')
      expect(layer.completedBytes).toBe(layer.size)
    }
    const total = armBlobs.reduce((n, b) => n + b.size, 0)
    expect(job.totalBytes).toBe(total)
    expect(job.completedBytes).toBe(total)
    expect(job.bytesBySource.origin).toBe(total)
    for (const blob of armBlobs) {
      expect(proxy.blobGets.get(blob.digest), blob.digest).toBe(1)
    }
    for (const blob of [amd.config, ...amd.layers]) {
      expect(proxy.blobGets.get(blob.digest), `amd64 blob ${blob.digest}`).toBeUndefined()
    }

    // the layers are in the supernode's cache: a daemon gets them without the registry serving them again
    for (const layer of arm.layers) {
      const res = await request(`${daemon.url}/v2/library/multi/blobs/${layer.digest}`, { signal: AbortSignal.timeout(60_000) })
      expect(res.statusCode).toBe(200)
      const hash = createHash('sha256')
      for await (const chunk of res.body) {
        hash.update(chunk as Buffer)
      }
      expect(`sha256:${hash.digest('hex')}`).toBe(layer.digest)
      expect(proxy.blobGets.get(layer.digest)).toBe(1)
    }
    const bytes = await daemonBytes(daemon.url)
    expect(bytes.origin).toBe(0)
    expect(bytes.supernode).toBe(arm.layerBytes)

    // listed, and a second preheat finds everything already cached
    const again = await postJob(`${supernode.url}/api/v1/preheat`, { image: `${host}/library/multi@${multi.indexDigest}`, platforms: ['linux/arm64'] }, auth)
    const second = await waitForJob(`${supernode.url}/api/v1/preheat/${again.json.id}`, auth)
    expect(second.state, second.error).toBe('succeeded')
    expect(second.bytesBySource).toEqual({ local: total, peer: 0, supernode: 0, origin: 0 })
    expect(sample(await scrape(`${supernode.url}/metrics`), 'shoal_supernode_preheat_jobs_total', { result: 'succeeded' })).toBe(2)
  })

  it('preheats a list of URLs, each a task keyed by its URL', async () => {
    const amd = multi.images[0]!
    const layer = amd.layers[0]!
    const url = `${proxy.url}/v2/library/multi/blobs/${layer.digest}`
    const created = await postJob(`${supernode.url}/api/v1/preheat`, { urls: [url] }, auth)
    expect(created.status).toBe(202)
    const job = await waitForJob(`${supernode.url}/api/v1/preheat/${created.json.id}`, auth)
    expect(job.state, job.error).toBe('succeeded')
    expect(job.image).toBeUndefined()
    expect(job.layers).toMatchObject([{ url, size: layer.size, completedBytes: layer.size, state: 'succeeded' }])
    expect(job.bytesBySource.origin).toBe(layer.size)
    expect(proxy.blobGets.get(layer.digest)).toBe(1)
    const refused = await postJob(`${supernode.url}/api/v1/preheat`, { urls: ['https://files.example.com/a.tar'] }, auth)
    expect(refused.status).toBe(403)
    expect(refused.json.errors[0]?.message).toContain('files.example.com')
  })

  it('fails a job whose layer the registry cannot serve, naming the layer and the reason', async () => {
    const missing = broken.layers[1]!
    // the registry loses the blob's data: its GET answers an error
    await rm(join(dir, 'registry', 'storage', 'docker', 'registry', 'v2', 'blobs', 'sha256', missing.digest.slice(7, 9), missing.digest.slice(7)), { recursive: true, force: true })
    const created = await postJob(`${supernode.url}/api/v1/preheat`, { image: `${host}/library/broken:v1` }, auth)
    expect(created.status).toBe(202)
    const job = await waitForJob(`${supernode.url}/api/v1/preheat/${created.json.id}`, auth)
    expect(job.state).toBe('failed')
    expect(job.error).toContain(missing.digest)
    const layer = job.layers.find(l => l.digest === missing.digest)!
    expect(layer.state).toBe('failed')
    expect(layer.error).toMatch(/404|answered/)
    for (const other of job.layers.filter(l => l.digest !== missing.digest)) {
      expect(other.state, other.digest).toBe('succeeded')
    }
  })

  it.each(['htpasswd (Basic)', 'token (Bearer)'])('pulls from a registry with credentials, and fails without them: %s', async (kind) => {
    const image = `${new URL(kind.startsWith('htpasswd') ? privateRegistry.url : tokenRegistry.url).host}/team/secret:v1`
    const pushed = kind.startsWith('htpasswd') ? secret : tokenSecret
    const without = await postJob(`${supernode.url}/api/v1/preheat`, { image }, auth)
    const failed = await waitForJob(`${supernode.url}/api/v1/preheat/${without.json.id}`, auth)
    expect(failed.state).toBe('failed')
    expect(failed.error).toMatch(kind.startsWith('htpasswd') ? /no credentials given|none were given/ : /401|403/)

    const badPassword = await postJob(`${supernode.url}/api/v1/preheat`, { image, credentials: { username: 'ops', password: 'wrong' } }, auth)
    expect((await waitForJob(`${supernode.url}/api/v1/preheat/${badPassword.json.id}`, auth)).state).toBe('failed')

    const withCreds = await postJob(`${supernode.url}/api/v1/preheat`, { image, credentials: { username: 'ops', password: 'op-secret' } }, auth)
    const job = await waitForJob(`${supernode.url}/api/v1/preheat/${withCreds.json.id}`, auth)
    expect(job.state, job.error).toBe('succeeded')
    expect(job.layers.map(l => l.digest).sort()).toEqual([pushed.config, ...pushed.layers].map(b => b.digest).sort())
    expect(job.completedBytes).toBe(pushed.config.size + pushed.layerBytes)
    // fetched from the registry (with the credentials), not found in the cache
    expect(job.bytesBySource.origin).toBe(pushed.config.size + pushed.layerBytes)
    // the credentials are not shown back
    expect(JSON.stringify(job)).not.toContain('op-secret')
  })
})
