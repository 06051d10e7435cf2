import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  controlCall, createP2PNode, generateClusterKey, loadOrCreatePrivateKey, parseClusterKey, silentLogger,
  type ControlRequest, type PullJobView
} from '@shoal/core'
import { Supernode } from '../src/index.ts'
import { startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'
import type { Libp2p } from 'libp2p'

describe('preheat by cluster members, over the control protocol', () => {
  let origin: TestOrigin
  let supernode: Supernode
  let member: Libp2p
  let dataDir: string
  const clusterKey = parseClusterKey(generateClusterKey())

  const call = async <T>(req: ControlRequest): Promise<{ status: number, json: T }> => {
    const res = await controlCall({ libp2p: member }, supernode.self().addrs.map(a => multiaddr(a)), req, { signal: AbortSignal.timeout(20_000) })
    return { status: res.status, json: res.body as T }
  }

  beforeAll(async () => {
    origin = await startTestOrigin()
    dataDir = await mkdtemp(join(tmpdir(), 'shoal-preheat-control-'))
    // no --preheat-token-file: over HTTP preheat is off, over libp2p the cluster key is the credential
    supernode = new Supernode({ logger: silentLogger() }, { listen: { host: '127.0.0.1', port: 0 }, p2pListen: ['/ip4/127.0.0.1/tcp/0'], dataDir: join(dataDir, 'supernode'), pieceSize: 64 * 1024, clusterKey, allowSource: [origin.url] })
    await supernode.start()
    member = await createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey: await loadOrCreatePrivateKey(join(dataDir, 'member.key')), clusterKey })
  })

  afterAll(async () => {
    await member?.stop()
    await supernode?.stop()
    await origin?.stop()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('creates a job for a member and reports it; HTTP without a token file says preheat is off', async () => {
    const data = randomBytes(200 * 1024 + 7)
    const { url } = origin.add('/files/release.tar', data)

    const created = await call<{ id: string, state: string }>({ op: 'preheat', body: { urls: [url] } })
    expect(created.status).toBe(200)
    expect(created.json.state).toBe('running')
    let job: PullJobView | undefined
    // bounded: 100 looks, 50 ms apart
    for (let i = 0; i < 100; i++) {
      const res = await call<PullJobView>({ op: 'preheat-status', body: { id: created.json.id } })
      expect(res.status).toBe(200)
      job = res.json
      if (job.state !== 'running') {
        break
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    expect(job?.state, job?.error).toBe('succeeded')
    expect(job?.layers).toMatchObject([{ url, size: data.byteLength, completedBytes: data.byteLength, state: 'succeeded' }])
    expect(origin.gets.get('/files/release.tar')).toBe(1)

    const res = await request(`${supernode.url}/api/v1/preheat`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ urls: [url] }), signal: AbortSignal.timeout(10_000) })
    expect(res.statusCode).toBe(403)
    expect(JSON.stringify(await res.body.json())).toMatch(/--preheat-token-file/)
  })

  it('answers a malformed request or an unknown job with the status HTTP would', async () => {
    expect((await call({ op: 'preheat', body: { image: 'a', urls: ['http://x/y'] } })).status).toBe(400)
    expect((await call({ op: 'preheat', body: { urls: ['https://not-allowed.example/x'] } })).status).toBe(403)
    expect((await call({ op: 'preheat-status', body: {} })).status).toBe(400)
    expect((await call({ op: 'preheat-status', body: { id: 'no-such-job' } })).status).toBe(404)
  })
})
