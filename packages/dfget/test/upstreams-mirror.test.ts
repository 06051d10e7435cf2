import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startSwarm, type TestSwarm } from './fixtures/swarm.ts'
import type { Daemon } from '../src/index.ts'
import type { AddressInfo } from 'node:net'

const sha256 = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`
const BOT = { username: 'bot', password: 's3cret' }

/**
 * A token-auth registry in one module's test: `/v2/` challenges, `/token` hands out
 * `token-<n>` for the bot's basic credentials, and only the latest token is accepted,
 * so revoking one is `generation++`.
 */
interface FakeRegistry {
  url: string
  requests: string[]
  generation: number
  tokenRequests: number
  /** The `scope` of every token request. */
  scopes: string[]
}

describe('the mirror with several upstreams', () => {
  let server: Server
  let registry: FakeRegistry
  let swarm: TestSwarm
  let daemon: Daemon
  const layer = randomBytes(200_000)
  const digest = sha256(layer)
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [{ digest }] }))
  const layer2 = randomBytes(100_000)
  const digest2 = sha256(layer2)

  beforeAll(async () => {
    registry = { url: '', requests: [], generation: 1, tokenRequests: 0, scopes: [] }
    const r = registry
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', r.url)
      r.requests.push(`${req.method ?? ''} ${req.url ?? ''}`)
      if (url.pathname === '/token') {
        r.tokenRequests++
        r.scopes.push(url.searchParams.get('scope') ?? '')
        const ok = req.headers.authorization === `Basic ${Buffer.from(`${BOT.username}:${BOT.password}`).toString('base64')}`
        res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' }).end(ok ? JSON.stringify({ token: `token-${r.generation}`, expires_in: 300 }) : '{}')
        return
      }
      if (req.headers.authorization !== `Bearer token-${r.generation}`) {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${r.url}/token",service="fake"`, 'content-type': 'application/json' })
          .end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }))
        return
      }
      if (url.pathname === '/v2/') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
      } else if (/^\/v2\/(library\/alpine|team\/app)\/manifests\/v1$/.test(url.pathname)) {
        res.writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json', 'docker-content-digest': sha256(manifest) }).end(manifest)
      } else if (/^\/v2\/(team\/app|team\/blobs\/app)\/manifests\//.test(url.pathname) && url.pathname.endsWith(sha256(manifest))) {
        res.writeHead(200, { 'content-type': 'application/vnd.docker.distribution.manifest.v2+json', 'content-length': String(manifest.byteLength), 'docker-content-digest': sha256(manifest) }).end(req.method === 'HEAD' ? undefined : manifest)
      } else if (url.pathname === `/v2/team/app/blobs/${digest}` || url.pathname === `/v2/team/app/blobs/${digest2}`) {
        const data = url.pathname.endsWith(digest) ? layer : layer2
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(data.byteLength) }).end(req.method === 'HEAD' ? undefined : data)
      } else {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: 'unknown' }] }))
      }
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    registry.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    // --registry is another (unused) origin: every request here names its upstream
    swarm = await startSwarm(registry.url, { daemons: 0 })
    daemon = await swarm.addDaemon({
      init: {
        registry: 'http://127.0.0.1:9',
        upstreams: [
          { name: 'private.example:5000', url: registry.url, ...BOT },
          { name: 'docker.io', url: registry.url, ...BOT }
        ]
      }
    })
  })

  afterAll(async () => {
    await swarm.stop()
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  })

  async function get (path: string, headers: Record<string, string> = {}): Promise<{ status: number, body: Buffer, headers: Record<string, unknown> }> {
    const res = await request(`${daemon.url}${path}`, { headers, signal: AbortSignal.timeout(20_000) })
    return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()), headers: res.headers }
  }

  it("answers the upstream's token challenge with its own credentials for a client that sends none, ?ns= kept off the upstream's URL", async () => {
    const res = await get('/v2/team/app/manifests/v1?ns=private.example:5000')
    expect(res.status, res.body.toString()).toBe(200)
    expect(res.body.equals(manifest)).toBe(true)
    expect(registry.requests).toContain('GET /v2/team/app/manifests/v1')
    expect(registry.requests.some(r => r.includes('ns='))).toBe(false)

    const blob = await get(`/v2/team/app/blobs/${digest}?ns=private.example:5000`)
    expect(blob.status).toBe(200)
    expect(sha256(blob.body)).toBe(digest)
  })

  it('puts a Docker Hub short name under library/', async () => {
    const res = await get('/v2/alpine/manifests/v1?ns=docker.io')
    expect(res.status).toBe(200)
    expect(registry.requests).toContain('GET /v2/library/alpine/manifests/v1')
  })

  it('learns a fresh token once when the upstream refuses the cached one', async () => {
    expect((await get('/v2/team/app/manifests/v1?ns=private.example:5000')).status).toBe(200)
    const before = registry.tokenRequests
    registry.generation++ // the cached token is revoked
    const res = await get('/v2/team/app/manifests/v1?ns=private.example:5000')
    expect(res.status).toBe(200)
    expect(registry.tokenRequests).toBe(before + 1)
  })

  it('learns a fresh token once for a blob and a manifest by digest when the upstream refuses the cached one', async () => {
    expect((await get('/v2/team/app/manifests/v1?ns=private.example:5000')).status).toBe(200)
    registry.generation++ // the cached token is revoked
    const before = registry.tokenRequests
    const blob = await get(`/v2/team/app/blobs/${digest2}?ns=private.example:5000`)
    expect(blob.status, blob.body.toString()).toBe(200)
    expect(sha256(blob.body)).toBe(digest2)
    expect(registry.tokenRequests).toBe(before + 1)

    registry.generation++
    const byDigest = await get(`/v2/team/app/manifests/${sha256(manifest)}?ns=private.example:5000`)
    expect(byDigest.status, byDigest.body.toString()).toBe(200)
    expect(byDigest.body.equals(manifest)).toBe(true)
    expect(registry.tokenRequests).toBe(before + 2)
  })

  it('asks for a token scoped to the repository the URL names, however many path segments look like routes', async () => {
    const res = await get(`/v2/team/blobs/app/manifests/${sha256(manifest)}?ns=private.example:5000`)
    expect(res.status, res.body.toString()).toBe(200)
    expect(registry.scopes).toContain('repository:team/blobs/app:pull')
    expect(registry.scopes).not.toContain('repository:team:pull')
  })

  it("sends a client's own credentials, not its own, and passes the refusal back", async () => {
    const res = await get('/v2/team/app/manifests/v1?ns=private.example:5000', { authorization: 'Bearer stolen' })
    expect(res.status).toBe(401)
    expect(String(res.headers['www-authenticate'])).toMatch(/^Bearer realm=/)
    const blob = await get(`/v2/team/app/blobs/${digest}?ns=private.example:5000`, { authorization: 'Bearer stolen' })
    expect(blob.status).toBe(401)
    expect(blob.body.includes(layer.subarray(0, 32))).toBe(false)
  })

  it('answers 404 NAME_UNKNOWN for a registry it does not know, asking nobody', async () => {
    const before = registry.requests.length
    for (const path of ['/v2/', '/v2/team/app/manifests/v1', `/v2/team/app/blobs/${digest}`]) {
      const res = await get(`${path}?ns=elsewhere.example`)
      expect(res.status, path).toBe(404)
      expect(JSON.parse(res.body.toString())).toEqual({ errors: [{ code: 'NAME_UNKNOWN', message: expect.stringContaining('"elsewhere.example" is not an upstream'), detail: null }] })
    }
    expect(registry.requests.length).toBe(before)
  })
})
