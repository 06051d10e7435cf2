import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { sample, scrape } from '../../../test/harness/metrics.ts'
import { sha256 } from '../../../test/harness/origin.ts'
import { startSwarm, type TestSwarm } from './fixtures/swarm.ts'
import type { Daemon } from '../src/index.ts'
import type { AddressInfo } from 'node:net'

const PIECE = 64 * 1024
const GOOD = 'Basic ' + Buffer.from('alice:secret').toString('base64')
const BAD = 'Basic ' + Buffer.from('alice:wrong').toString('base64')
const CHALLENGE = 'Basic realm="shoal-test"'
/** Credentials a login front end answers with a redirect to its login page. */
const LOGIN = 'Bearer to-the-login-page'

/**
 * A registry that wants credentials for every blob of `private/app`, holds blobs per
 * repository, can send a blob slowly, and redirects `redirect/app` blobs to a storage
 * URL that (like a presigned GET URL) refuses HEAD.
 */
interface AuthOrigin { url: string, blobs: Map<string, { data: Buffer, slow?: boolean }>, heads: string[], stop(): Promise<void> }

async function startAuthOrigin (): Promise<AuthOrigin> {
  const blobs = new Map<string, { data: Buffer, slow?: boolean }>()
  const heads: string[] = []
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    if (req.method === 'HEAD') {
      heads.push(path)
    }
    const api = { 'docker-distribution-api-version': 'registry/2.0' }
    const storage = /^\/storage\/(.+)$/.exec(path)
    if (storage != null) {
      const blob = blobs.get(`redirect/app@${storage[1]}`)
      res.writeHead(req.method === 'HEAD' || blob == null ? 403 : 200).end(req.method === 'HEAD' ? undefined : blob?.data)
      return
    }
    // manifests by digest are held and shared like blobs, and guarded the same way
    const m = /^\/v2\/(.+)\/(?:blobs|manifests)\/(.+)$/.exec(path)
    if (m == null) {
      res.writeHead(200, api).end('{}')
      return
    }
    if (req.headers.authorization === LOGIN) {
      res.writeHead(302, { location: '/login' }).end()
      return
    }
    if (req.headers.authorization !== GOOD) {
      res.writeHead(401, { ...api, 'www-authenticate': CHALLENGE, 'content-type': 'application/json' })
      res.end(req.method === 'HEAD' ? undefined : '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}')
      return
    }
    const blob = blobs.get(`${m[1]}@${m[2]}`)
    if (blob == null) {
      res.writeHead(404, { ...api, 'content-type': 'application/json' }).end(req.method === 'HEAD' ? undefined : '{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":null}]}')
      return
    }
    if (m[1] === 'redirect/app') {
      res.writeHead(307, { ...api, location: `/storage/${m[2]}` }).end()
      return
    }
    res.writeHead(200, { ...api, 'content-length': String(blob.data.byteLength), 'content-type': 'application/octet-stream' })
    if (req.method === 'HEAD') {
      res.end()
      return
    }
    if (blob.slow !== true) {
      res.end(blob.data)
      return
    }
    let offset = 0
    const timer = setInterval(() => {
      res.write(blob.data.subarray(offset, offset + PIECE))
      offset += PIECE
      if (offset >= blob.data.byteLength) {
        clearInterval(timer)
        res.end()
      }
    }, 150)
    res.once('close', () => { clearInterval(timer) })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    blobs,
    heads,
    async stop () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

interface Answer { status: number, headers: Record<string, unknown>, body: Buffer }

async function get (url: string, headers: Record<string, string> = {}, method: 'GET' | 'OPTIONS' = 'GET'): Promise<Answer> {
  const res = await request(url, { method, headers, signal: AbortSignal.timeout(20_000) })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

const served = async (d: Daemon): Promise<number> => sample(await scrape(`${d.url}/metrics`), 'shoal_dfget_served_bytes_total')
const checks = async (d: Daemon, result: string): Promise<number> => sample(await scrape(`${d.url}/metrics`), 'shoal_dfget_authz_checks_total', { result })

describe('private blobs stay private', () => {
  let origin: AuthOrigin
  let swarm: TestSwarm
  let a: Daemon
  let b: Daemon

  beforeAll(async () => {
    origin = await startAuthOrigin()
    swarm = await startSwarm(origin.url, { daemons: 2, pieceSize: PIECE })
    ;[a, b] = swarm.daemons as [Daemon, Daemon]
  })

  afterAll(async () => {
    await swarm?.stop()
    await origin?.stop()
  })

  const add = (repo: string, size: number, slow = false): { data: Buffer, digest: string, path: string } => {
    const data = randomBytes(size)
    const digest = sha256(data)
    origin.blobs.set(`${repo}@${digest}`, { data, slow })
    return { data, digest, path: `/v2/${repo}/blobs/${digest}` }
  }

  /** The probes that must each get the registry's no and no byte of the layer. */
  const probes = (path: string): Array<[string, string, Record<string, string>]> => [
    ['no credentials', path, {}],
    ['a wrong password', path, { authorization: BAD }],
    ["another repository's name", path.replace('/private/app/', '/other/app/'), { authorization: GOOD }],
    ['Accept: */*', path, { accept: '*/*' }]
  ]

  async function expectRefused (daemon: Daemon, path: string, layer: Buffer): Promise<void> {
    const before = await served(daemon)
    for (const [what, probe, headers] of probes(path)) {
      const res = await get(`${daemon.url}${probe}`, headers)
      expect(res.status, what).toBe(probe.includes('/other/') ? 404 : 401)
      if (res.status === 401) {
        expect(res.headers['www-authenticate'], what).toBe(CHALLENGE)
        expect(JSON.parse(res.body.toString()).errors[0].code, what).toBe('UNAUTHORIZED')
      }
      expect(res.headers['docker-distribution-api-version'], what).toBe('registry/2.0')
      expect(res.body.byteLength, what).toBeLessThan(1024)
      expect(res.body.includes(layer.subarray(0, 32)), what).toBe(false)
    }
    expect(await served(daemon)).toBe(before)
  }

  it('refuses content on disk, on another host and in flight to clients the registry refuses', async () => {
    const blob = add('private/app', 3 * PIECE + 5)
    const ok = await get(`${a.url}${blob.path}`, { authorization: GOOD })
    expect(ok.status).toBe(200)
    expect(sha256(ok.body)).toBe(blob.digest)

    // on disk on host A
    await expectRefused(a, blob.path, blob.data)
    // host B, whose pieces would come from host A
    await expectRefused(b, blob.path, blob.data)
    const okB = await get(`${b.url}${blob.path}`, { authorization: GOOD })
    expect(sha256(okB.body)).toBe(blob.digest)
    expect(sample(await scrape(`${b.url}/metrics`), 'shoal_dfget_download_bytes_total', { source: 'peer' })).toBe(blob.data.byteLength)

    // in flight: another client is pulling a slow blob
    const slow = add('private/app', 8 * PIECE, true)
    const pulling = request(`${a.url}${slow.path}`, { headers: { authorization: GOOD }, signal: AbortSignal.timeout(20_000) })
    const started = await pulling
    expect(started.statusCode).toBe(200)
    expect(sample(await scrape(`${a.url}/metrics`), 'shoal_dfget_active_downloads')).toBe(1)
    await expectRefused(a, slow.path, slow.data)
    expect(sample(await scrape(`${a.url}/metrics`), 'shoal_dfget_active_downloads')).toBe(1)
    expect(sha256(Buffer.from(await started.body.arrayBuffer()))).toBe(slow.digest)
  })

  it('asks once per client, repository and digest within the cache ttl; with ttl 0 every time', async () => {
    const blob = add('private/app', PIECE)
    const headsBefore = origin.heads.filter(p => p === blob.path).length
    const cachedBefore = await checks(a, 'cached')
    for (let i = 0; i < 3; i++) {
      expect((await get(`${a.url}${blob.path}`, { authorization: GOOD })).status).toBe(200)
    }
    expect(origin.heads.filter(p => p === blob.path).length - headsBefore).toBe(1)
    expect(await checks(a, 'cached') - cachedBefore).toBe(2)
    // a denial is not cached for the next client, nor an allowed answer for another one
    expect((await get(`${a.url}${blob.path}`)).status).toBe(401)

    const uncached = await swarm.addDaemon({ name: 'uncached', init: { authCacheTtl: 0 } })
    for (let i = 0; i < 3; i++) {
      expect((await get(`${uncached.url}${blob.path}`, { authorization: GOOD })).status).toBe(200)
    }
    expect(await checks(uncached, 'allowed')).toBe(3)
    expect(await checks(uncached, 'cached')).toBe(0)
  })

  it('answers a blob HEAD with one request upstream: the length from the authorization check', async () => {
    const blob = add('private/app', PIECE + 3)
    const before = origin.heads.filter(p => p === blob.path).length
    const res = await request(`${a.url}${blob.path}`, { method: 'HEAD', headers: { authorization: GOOD }, signal: AbortSignal.timeout(10_000) })
    await res.body.dump()
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-length']).toBe(String(blob.data.byteLength))
    expect(origin.heads.filter(p => p === blob.path).length).toBe(before + 1)
  })

  it('takes a redirect as a yes without following it', async () => {
    const blob = add('redirect/app', 2 * PIECE)
    const res = await get(`${a.url}${blob.path}`, { authorization: GOOD })
    expect(res.status).toBe(200)
    expect(sha256(res.body)).toBe(blob.digest)
    expect(origin.heads).not.toContain(`/storage/${blob.digest}`)
  })

  it('answers 502 when the registry cannot be asked', async () => {
    // a daemon pointed at a port nothing listens on
    const dead = await swarm.addDaemon({ name: 'dead-registry', supernode: null, init: { registry: 'http://127.0.0.1:9' } })
    const res = await get(`${dead.url}/v2/private/app/blobs/sha256:${'1'.repeat(64)}`, { authorization: GOOD })
    expect(res.status).toBe(502)
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe('UNAVAILABLE')
    expect(await checks(dead, 'error')).toBe(1)
  })

  it('POST /api/v1/downloads asks the source before serving content this host has, or its peers would serve', async () => {
    const blob = add('private/app', PIECE + 3)
    const url = `${origin.url}${blob.path}`
    expect((await get(`${a.url}${blob.path}`, { authorization: GOOD })).status).toBe(200)
    const post = async (headers?: Record<string, string>): Promise<Answer> => {
      const res = await request(`${a.url}/api/v1/downloads`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ url, digest: blob.digest, ...(headers != null ? { headers } : {}) }),
        signal: AbortSignal.timeout(20_000)
      })
      return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
    }
    const refused = await post()
    expect(refused.status).toBe(401)
    expect(refused.body.includes(blob.data.subarray(0, 32))).toBe(false)
    expect((await post({ authorization: BAD })).status).toBe(401)
    const ok = await post({ authorization: GOOD })
    expect(ok.status).toBe(200)
    expect(sha256(ok.body)).toBe(blob.digest)

    // host B holds nothing, but its pieces would come from host A
    const onB = await request(`${b.url}/api/v1/downloads`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url, digest: blob.digest }),
      signal: AbortSignal.timeout(20_000)
    })
    expect(onB.statusCode).toBe(401)
    expect(Buffer.from(await onB.body.arrayBuffer()).includes(blob.data.subarray(0, 32))).toBe(false)
  })

  it('POST /api/v1/downloads does not hand out content by a digest the URL the caller may read does not name', async () => {
    const blob = add('private/app', PIECE + 5)
    // host A holds the private blob, keyed by its digest
    expect((await get(`${a.url}${blob.path}`, { authorization: GOOD })).status).toBe(200)
    // a URL anyone may read, and the private blob's digest
    for (const daemon of [a, b]) {
      let body = Buffer.alloc(0)
      try {
        const res = await request(`${daemon.url}/api/v1/downloads`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ url: `${origin.url}/files/public.txt`, digest: blob.digest }),
          signal: AbortSignal.timeout(20_000)
        })
        body = Buffer.from(await res.body.arrayBuffer())
      } catch {
        // cut: the public file does not match the digest
      }
      expect(body.includes(blob.data.subarray(0, 32))).toBe(false)
    }
  })

  it('refuses a private manifest by digest, held or shared by a peer, to clients the registry refuses', async () => {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [], note: randomBytes(8).toString('hex') }))
    const digest = sha256(manifest)
    origin.blobs.set(`private/app@${digest}`, { data: manifest })
    const path = `/v2/private/app/manifests/${digest}`
    const ok = await get(`${a.url}${path}`, { authorization: GOOD })
    expect(ok.status).toBe(200)
    expect(ok.body.equals(manifest)).toBe(true)
    for (const daemon of [a, b]) {
      for (const [what, headers] of [['no credentials', {}], ['a wrong password', { authorization: BAD }]] as const) {
        const res = await get(`${daemon.url}${path}`, headers)
        expect(res.status, what).toBe(401)
        expect(res.headers['www-authenticate'], what).toBe(CHALLENGE)
        expect(res.body.includes(manifest), what).toBe(false)
      }
    }
    expect((await get(`${b.url}${path}`, { authorization: GOOD })).body.equals(manifest)).toBe(true)
  })

  it('does not take a redirect as a yes for a manifest by digest', async () => {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [], note: randomBytes(8).toString('hex') }))
    const digest = sha256(manifest)
    origin.blobs.set(`private/app@${digest}`, { data: manifest })
    const path = `/v2/private/app/manifests/${digest}`
    expect((await get(`${a.url}${path}`, { authorization: GOOD })).body.equals(manifest)).toBe(true)
    // a login front end answers these credentials with a 302: no sign they may read it
    const res = await get(`${a.url}${path}`, { authorization: LOGIN })
    expect(res.status).toBe(403)
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe('DENIED')
    expect(res.body.includes(manifest)).toBe(false)
  })
})

describe('the daemon is a local surface', () => {
  let origin: AuthOrigin
  let swarm: TestSwarm

  beforeAll(async () => {
    origin = await startAuthOrigin()
    swarm = await startSwarm(origin.url, { daemons: 0 })
  })

  afterAll(async () => {
    await swarm?.stop()
    await origin?.stop()
  })

  it('answers loopback names and its listen address, refuses any other Host, and sends no CORS headers', async () => {
    const d = await swarm.addDaemon({ supernode: null })
    const port = new URL(d.url).port
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, 'localhost']) {
      const res = await get(`${d.url}/healthz`, { host })
      expect(res.status, host).toBe(200)
    }
    for (const host of [`attacker.example:${port}`, 'localhost.attacker.example', '127.0.0.2', '0.0.0.0']) {
      const res = await get(`${d.url}/v2/`, { host })
      expect(res.status, host).toBe(403)
      expect(JSON.parse(res.body.toString()).errors[0].message, host).toContain('--allowed-host')
    }
    for (const res of [
      await get(`${d.url}/v2/`, { origin: 'http://attacker.example' }),
      await get(`${d.url}/v2/`, { origin: 'http://attacker.example', 'access-control-request-method': 'GET' }, 'OPTIONS'),
      await get(`${d.url}/api/v1/status`, { origin: 'http://attacker.example' })
    ]) {
      expect(Object.keys(res.headers).filter(h => h.startsWith('access-control-'))).toEqual([])
    }
  })

  it('answers names given with --allowed-host', async () => {
    const d = await swarm.addDaemon({ supernode: null, name: 'named', init: { allowedHosts: ['mirror.internal'] } })
    expect((await get(`${d.url}/healthz`, { host: 'mirror.internal:65001' })).status).toBe(200)
    expect((await get(`${d.url}/healthz`, { host: 'other.internal' })).status).toBe(403)
  })
})
