import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp } from 'node:fs/promises'
import { createServer, type RequestListener, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { API_PREFIX, generateClusterKey, parseClusterKey, silentLogger } from '@shoal/core'
import { Daemon } from '../src/index.ts'
import { sha256, startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'
import { startSwarm, type TestSwarm } from './fixtures/swarm.ts'
import type { AddressInfo } from 'node:net'

interface Counted { url: string, port: number, requests: string[] }

async function post (daemon: string, body: unknown): Promise<{ status: number, json: { errors?: Array<{ code: string, message: string }> } }> {
  const res = await request(`${daemon}${API_PREFIX}/downloads`, {
    method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(20_000)
  })
  const text = await res.body.text()
  return { status: res.statusCode, json: res.statusCode === 200 ? {} : JSON.parse(text) }
}

describe('the daemon fetches only what it may', () => {
  let registry: TestOrigin
  let swarm: TestSwarm
  const servers: Server[] = []

  async function serve (handler: RequestListener): Promise<Counted> {
    const requests: string[] = []
    const server = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`)
      handler(req, res)
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    servers.push(server)
    const { port } = server.address() as AddressInfo
    return { url: `http://127.0.0.1:${port}`, port, requests }
  }

  beforeAll(async () => {
    registry = await startTestOrigin()
    swarm = await startSwarm(registry.url, { daemons: 1, pieceSize: 64 * 1024 })
  })

  afterAll(async () => {
    await swarm.stop()
    await registry.stop()
    await Promise.all(servers.map(async s => { s.closeAllConnections(); s.close(); await once(s, 'close') }))
  })

  it('answers 403 for a URL that is not an allowed source, asking neither it nor the supernode', async () => {
    const other = await serve((_req, res) => { res.writeHead(200).end('secret') })
    const tasksBefore = [...swarm.supernode.tasks.all()].length
    const res = await post(swarm.daemons[0]!.url, { url: `${other.url}/latest/meta-data/` })
    expect(res.status).toBe(403)
    expect(res.json.errors?.[0]?.code).toBe('DENIED')
    expect(res.json.errors?.[0]?.message).toMatch(`allow it with --allow-source 127.0.0.1:${other.port}`)
    expect(other.requests).toEqual([])
    expect([...swarm.supernode.tasks.all()]).toHaveLength(tasksBefore)
  })

  it('relays a supernode refusal as a 403 and does not go to the origin itself', async () => {
    const data = randomBytes(1000)
    const files = await serve((_req, res) => { res.writeHead(200, { 'content-length': String(data.byteLength) }).end(data) })
    // this daemon may fetch the host, the supernode may not
    const daemon = await swarm.addDaemon({ name: 'permissive', allowSource: [files.url] })
    const res = await post(daemon.url, { url: `${files.url}/file.bin`, digest: sha256(data) })
    expect(res.status).toBe(403)
    expect(res.json.errors?.[0]?.message).toMatch(/--allow-source/)
    // the HEAD is this daemon asking whether the caller may read it (it may); no GET follows
    expect(files.requests).toEqual(['HEAD /file.bin'])
  })

  it('downloads from an extra host given with --allow-source when the supernode allows it too', async () => {
    const data = randomBytes(1000)
    // no supernode: straight to the origin, which this daemon allows
    const files = await serve((_req, res) => { res.writeHead(200, { 'content-length': String(data.byteLength) }).end(data) })
    const daemon = await swarm.addDaemon({ name: 'direct', supernode: null, allowSource: [`127.0.0.1:${files.port}`] })
    const ok = await request(`${daemon.url}${API_PREFIX}/downloads`, { method: 'POST', body: JSON.stringify({ url: `${files.url}/file.bin` }), headers: { 'content-type': 'application/json' } })
    expect(ok.statusCode).toBe(200)
    expect(Buffer.from(await ok.body.arrayBuffer()).equals(data)).toBe(true)
    // the HEAD asks whether the caller may read it; then the one GET
    expect(files.requests).toEqual(['HEAD /file.bin', 'GET /file.bin'])
  })

  it('refuses, as a 403, a manifest the registry redirects to a private address', async () => {
    const inside = await serve((_req, res) => { res.writeHead(200).end('{}') })
    const upstream = await serve((_req, res) => { res.writeHead(307, { location: `http://localhost:${inside.port}/manifest` }).end() })
    const daemon = new Daemon({ logger: silentLogger() }, {
      listen: { host: '127.0.0.1', port: 0 },
      registry: upstream.url,
      supernode: null,
      p2pListen: ['/ip4/127.0.0.1/tcp/0'],
      dataDir: await mkdtemp(join(tmpdir(), 'shoal-redirect-')),
      clusterKey: parseClusterKey(generateClusterKey())
    })
    await daemon.start()
    try {
      const res = await request(`${daemon.url}/v2/library/app/manifests/v1`, { signal: AbortSignal.timeout(20_000) })
      const body = await res.body.json() as { errors: Array<{ code: string, message: string }> }
      expect(res.statusCode).toBe(403)
      expect(body.errors[0]?.message).toMatch(/not a public address .*--allow-private-redirects/)
      expect(upstream.requests).toEqual(['GET /v2/library/app/manifests/v1'])
      expect(inside.requests).toEqual([])
    } finally {
      await daemon.stop()
    }
  })
})
