/**
 * Private layers stay private, with real parts: Debian's docker-registry with htpasswd
 * and with token auth (a token server of our own issuing RS256 JWTs), a supernode, two
 * daemons and real dockerd. Whoever the registry would refuse gets the registry's
 * refusal from the mirror and not one byte of the layer: whether the layer is on disk,
 * on its way for another client, or on another host.
 */
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.ts'
import { startDockerd, type Dockerd } from '../harness/dockerd.ts'
import { generateImage, writeRandomBlob, type Blob, type GeneratedImage } from '../harness/image.ts'
import { sample, scrape } from '../harness/metrics.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { pushBlob, startDockerRegistry, type Registry } from '../harness/registry.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'
import { fetchToken, startTokenServer, type TokenServer } from '../harness/token-server.ts'

const MiB = 1024 * 1024
const USER = { name: 'alice', password: 'correct horse battery' }
const REPO = 'private/app'
const skip = requireReal({ binaries: ['dockerd', 'docker-registry', 'openssl'], root: true })

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const served = async (d: DaemonHandle): Promise<number> => sample(await scrape(`${d.url}/metrics`), 'shoal_dfget_served_bytes_total')

interface Answer { status: number, headers: Record<string, unknown>, body: Buffer }

async function get (url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await request(url, { headers, signal: AbortSignal.timeout(60_000) })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

describe.skipIf(skip != null).each(['htpasswd', 'token'] as const)(`a private registry (%s) behind the mirror${skip != null ? ` (skipped: ${skip})` : ''}`, (kind) => {
  let dir: string
  let tokens: TokenServer | undefined
  let registry: Registry
  let proxy: CountingProxy
  let supernode: SupernodeHandle
  let a: DaemonHandle
  let b: DaemonHandle
  const dockerds: Dockerd[] = []
  let image: GeneratedImage
  let slow: Blob

  /** Credentials the registry accepts for pulling from REPO. */
  async function valid (): Promise<string> {
    if (tokens == null) {
      return basic(USER.name, USER.password)
    }
    const token = await fetchToken(tokens.realm, tokens.service, `repository:${REPO}:pull`, USER)
    if (token == null) {
      throw new Error('the token server refused valid credentials')
    }
    return `Bearer ${token}`
  }

  beforeAll(async () => {
    dir = await makeTestDir(`private-${kind}`)
    await mkdir(join(dir, 'registry'), { recursive: true })
    if (kind === 'token') {
      tokens = await startTokenServer(join(dir, 'registry'), { users: { [USER.name]: { password: USER.password, repositories: [REPO] } } })
    }
    const t = tokens
    registry = await startDockerRegistry(join(dir, 'registry'), t == null
      ? { htpasswd: { [USER.name]: USER.password }, pushAuthorization: () => basic(USER.name, USER.password) }
      : {
          token: { realm: t.realm, service: t.service, issuer: t.issuer, rootCertBundle: t.certFile },
          pushAuthorization: (name) => `Bearer ${t.mint('pusher', [{ type: 'repository', name, actions: ['pull', 'push'] }])}`
        })
    // blob bodies at 3 MiB/s, so a 6 MiB layer is in flight for about two seconds
    proxy = await startCountingProxy(registry.url, { blobBytesPerSecond: 3 * MiB })
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [proxy.url], pieceSize: MiB })
    a = await startDaemon({ dir, name: 'host-a', registry: proxy.url, supernode: supernode.url, extraArgs: ['--auth-cache-ttl', '30000', '--allowed-host', 'shoal-mirror.test'] })
    b = await startDaemon({ dir, name: 'host-b', registry: proxy.url, supernode: supernode.url })

    image = await generateImage(await mkdtemp(join(dir, 'img-')), REPO, 'v1', [2 * MiB + 4321, 1024])
    await registry.push(image)
    slow = await writeRandomBlob(join(dir, 'slow.bin'), 6 * MiB)
    await pushBlob(registry.url, REPO, slow, t == null ? basic(USER.name, USER.password) : `Bearer ${t.mint('pusher', [{ type: 'repository', name: REPO, actions: ['pull', 'push'] }])}`)
  }, 120_000)

  afterAll(async () => {
    await Promise.allSettled(dockerds.map(async d => { await d.stop() }))
    await Promise.allSettled([a, b].filter(d => d != null).map(async d => { await d.proc.stop() }))
    await supernode?.proc.stop()
    await proxy?.stop()
    await registry?.stop()
    await tokens?.stop()
    await removeTestDir(dir)
  }, 60_000)

  /** Each must get the registry's refusal, and none of the layer. */
  async function expectRefused (daemon: DaemonHandle, digest: string, layer: Buffer): Promise<void> {
    const path = `/v2/${REPO}/blobs/${digest}`
    const probes: Array<[string, string, Record<string, string>]> = [
      ['no credentials', path, {}],
      ['a wrong password', path, { authorization: basic(USER.name, 'wrong password') }],
      ["another repository's name", path.replace(`/${REPO}/`, '/other/app/'), { authorization: await valid() }],
      ['Accept: */*', path, { accept: '*/*' }]
    ]
    const before = await served(daemon)
    for (const [what, probe, headers] of probes) {
      const res = await get(`${daemon.url}${probe}`, headers)
      expect([401, 403, 404], `${what}: ${res.status} ${res.body.toString().slice(0, 200)}`).toContain(res.status)
      if (probe === path) {
        expect(res.status, what).toBe(401)
        expect(String(res.headers['www-authenticate']), what).toMatch(kind === 'token' ? /^Bearer realm="http:\/\/127\.0\.0\.1:\d+\/token"/ : /^Basic realm="shoal-test"/)
      }
      expect(res.headers['docker-distribution-api-version'], what).toBe('registry/2.0')
      expect(res.body.byteLength, what).toBeLessThan(2048)
      expect(res.body.includes(layer.subarray(0, 64)), what).toBe(false)
    }
    expect(await served(daemon), `bytes served by ${daemon.name} to refused clients`).toBe(before)
  }

  it('serves a private layer only to clients the registry lets read it: on disk, on another host, in flight', async () => {
    const layer = image.layers[0]!
    const data = await readFile(layer.path)
    const first = await get(`${a.url}/v2/${REPO}/blobs/${layer.digest}`, { authorization: await valid() })
    expect(first.status).toBe(200)
    expect(sha256(first.body)).toBe(layer.digest)

    // on disk on host A; host B, whose pieces would come from host A
    await expectRefused(a, layer.digest, data)
    await expectRefused(b, layer.digest, data)
    const onB = await get(`${b.url}/v2/${REPO}/blobs/${layer.digest}`, { authorization: await valid() })
    expect(onB.status).toBe(200)
    expect(sha256(onB.body)).toBe(layer.digest)
    expect(sample(await scrape(`${b.url}/metrics`), 'shoal_dfget_download_bytes_total', { source: 'peer' })).toBeGreaterThan(0)

    // in flight: an authorized client is pulling a slow layer on host A
    const slowData = await readFile(slow.path)
    const pulling = await request(`${a.url}/v2/${REPO}/blobs/${slow.digest}`, { headers: { authorization: await valid() }, signal: AbortSignal.timeout(60_000) })
    expect(pulling.statusCode).toBe(200)
    const body = pulling.body.arrayBuffer()
    expect(sample(await scrape(`${a.url}/metrics`), 'shoal_dfget_active_downloads')).toBe(1)
    await expectRefused(a, slow.digest, slowData)
    await expectRefused(b, slow.digest, slowData)
    expect(sample(await scrape(`${a.url}/metrics`), 'shoal_dfget_active_downloads'), 'the layer was still in flight during the probes').toBe(1)
    expect(sha256(Buffer.from(await body))).toBe(slow.digest)
    expect(proxy.blobGets.get(slow.digest), 'registry GETs of the slow layer').toBe(1)
  }, 120_000)

  it('dockerd logs in to the mirror and pulls the private image; without login it gets a refusal and no layer byte', async () => {
    const hostA = new URL(a.url).host
    const hostB = new URL(b.url).host
    const withLogin = await startDockerd(join(dir, 'dockerd-login'), a.url)
    dockerds.push(withLogin)
    const without = await startDockerd(join(dir, 'dockerd-anon'), b.url)
    dockerds.push(without)

    expect(await withLogin.login(hostA, USER.name, USER.password)).toMatch(/Login Succeeded/)
    await withLogin.pull(`${hostA}/${REPO}:v1`)
    expect(await withLogin.imageId(`${hostA}/${REPO}:v1`)).toBe(image.imageId)

    const before = await served(b)
    await expect(without.pull(`${hostB}/${REPO}:v1`)).rejects.toThrow(/unauthorized|authentication required|no basic auth credentials|denied/i)
    expect(await served(b), 'bytes the mirror served to the dockerd without login').toBe(before)
  }, 300_000)

  it('refuses a request whose Host is not loopback, the listen address or an --allowed-host name', async () => {
    const refused = await get(`${a.url}/v2/`, { host: 'rebound.attacker.example' })
    expect(refused.status).toBe(403)
    expect(JSON.parse(refused.body.toString()).errors[0].message).toContain('--allowed-host')
    const blob = await get(`${a.url}/v2/${REPO}/blobs/${image.layers[1]!.digest}`, { host: 'rebound.attacker.example', authorization: await valid() })
    expect(blob.status).toBe(403)
    // named with --allowed-host: answered (by the registry's challenge: no credentials)
    expect((await get(`${a.url}/v2/`, { host: 'shoal-mirror.test:65001' })).status).toBe(401)
  })
})
