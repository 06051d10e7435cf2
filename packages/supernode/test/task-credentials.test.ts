import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp } from 'node:fs/promises'
import { createServer, type RequestListener, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createMetricsRegistry, PieceStore, silentLogger, SourceClient } from '@shoal/core'
import { SourceFetcher, SupernodeMetrics, TaskManager } from '../src/index.ts'
import type { AddressInfo } from 'node:net'

interface Seen { path: string, authorization: string | undefined }

const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
const peer = { peerId: 'PeerA', addrs: [], hostname: 'a' }

describe('task credentials', () => {
  const servers: Server[] = []
  let store: PieceStore
  let source: SourceClient

  async function serve (handler: RequestListener): Promise<{ url: string, seen: Seen[] }> {
    const seen: Seen[] = []
    const server = createServer((req, res) => {
      seen.push({ path: req.url ?? '', authorization: req.headers.authorization })
      handler(req, res)
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    servers.push(server)
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
  }

  beforeEach(async () => {
    store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-creds-')) })
    await store.start()
  })

  afterEach(async () => {
    await source.stop()
    await store.stop()
    await Promise.all(servers.splice(0).map(async s => { s.closeAllConnections(); s.close(); await once(s, 'close') }))
  })

  const manager = (allow: string[]): TaskManager => {
    source = new SourceClient({ logger: silentLogger() }, { allow })
    const metrics = new SupernodeMetrics(createMetricsRegistry({ processMetrics: false }))
    const fetcher = new SourceFetcher({ store, source, logger: silentLogger(), metrics })
    return new TaskManager({ store, fetcher, logger: silentLogger(), metrics }, { failedTaskRetryAfter: 0 })
  }

  it("sends client B's Authorization only to B's URL when B retries a task A registered under another URL", async () => {
    const data = randomBytes(1000)
    const digest = sha(data)
    // A's registry fails; B's has the same blob
    const a = await serve((_req, res) => { res.writeHead(500).end() })
    const b = await serve((_req, res) => { res.writeHead(200, { 'content-length': String(data.byteLength) }).end(data) })
    const tasks = manager([a.url, b.url])

    const first = await tasks.register({ url: `${a.url}/v2/a/blobs/${digest}`, digest, headers: { authorization: 'Bearer A' }, peer })
    expect(first.state).toBe('failed')

    // B registers the same digest under its own URL; until A's failed fetch has wound
    // down B is answered from the negative cache, then the task starts over (bounded)
    const register = async (): Promise<typeof first> => tasks.register({ url: `${b.url}/v2/b/blobs/${digest}`, digest, headers: { authorization: 'Bearer B' }, peer })
    let second = await register()
    for (let i = 0; i < 50 && second.state === 'failed'; i++) {
      await new Promise(resolve => setTimeout(resolve, 20))
      second = await register()
    }
    expect(second.id).toBe(first.id)
    for (let i = 0; i < 100 && second.state === 'running'; i++) {
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    expect(second.state).toBe('success')
    expect(second.url).toBe(`${b.url}/v2/b/blobs/${digest}`)
    expect(a.seen).toEqual([{ path: `/v2/a/blobs/${digest}`, authorization: 'Bearer A' }])
    expect(b.seen).toEqual([{ path: `/v2/b/blobs/${digest}`, authorization: 'Bearer B' }])
    expect(Object.keys(second)).not.toContain('headers')
    await tasks.stop()
  })

  it('refuses a source that is not allowed with a 403 naming the flag, and asks it nothing', async () => {
    const a = await serve((_req, res) => { res.writeHead(200).end('x') })
    const tasks = manager([])
    const task = await tasks.register({ url: `${a.url}/files/x`, headers: { authorization: 'Bearer A' }, peer })
    expect(task.state).toBe('failed')
    expect(task.error).toMatchObject({ code: 'ERR_SOURCE_REFUSED', sourceStatus: 403, message: expect.stringMatching(/--allow-source 127\.0\.0\.1:\d+/) })
    expect(a.seen).toEqual([])
    await tasks.stop()
  })
})
