import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import {
  controlCall, createP2PNode, generateClusterKey, loadOrCreatePrivateKey, parseClusterKey, silentLogger,
  type ControlRequest, type RegisterTaskResponse, type ScheduleResponse
} from '@shoal/core'
import { Supernode } from '../src/index.ts'
import { startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'
import type { Libp2p } from 'libp2p'

const PIECE = 64 * 1024
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

describe('supernode control plane', () => {
  let origin: TestOrigin
  let supernode: Supernode
  let dataDir: string
  const clusterKey = parseClusterKey(generateClusterKey())
  /** Daemons, as the libp2p nodes they call from, by test name (one node per name, however many ask at once) */
  const nodes = new Map<string, Promise<Libp2p>>()

  const node = async (name: string): Promise<Libp2p> => {
    let n = nodes.get(name)
    if (n == null) {
      n = (async () => {
        const privateKey = await loadOrCreatePrivateKey(join(dataDir, 'peers', `${name}.key`))
        return createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey, clusterKey })
      })()
      nodes.set(name, n)
    }
    return n
  }
  /** The real peer id behind a test name */
  const id = async (name: string): Promise<string> => (await node(name)).peerId.toString()
  const peer = async (name: string): Promise<object> => ({ peerId: await id(name), addrs: (await node(name)).getMultiaddrs().map(String), hostname: name })

  const call = async <T>(from: string, req: ControlRequest): Promise<{ status: number, json: T }> => {
    const res = await controlCall({ libp2p: await node(from) }, supernode.self().addrs.map(a => multiaddr(a)), req, { signal: AbortSignal.timeout(20_000) })
    return { status: res.status, json: res.body as T }
  }
  const schedule = async (taskId: string, from: string, body: Record<string, unknown>): Promise<{ status: number, json: ScheduleResponse }> =>
    call<ScheduleResponse>(from, { op: 'schedule', taskId, body: { peerId: await id(from), ...body } })
  const register = async (url: string, digest?: string, from = 'PeerA'): Promise<RegisterTaskResponse> => {
    const res = await call<RegisterTaskResponse>(from, { op: 'register', body: { url, ...(digest != null ? { digest } : {}), peer: await peer(from) } })
    expect(res.status).toBe(200)
    return res.json
  }
  /** Long-polls until the task leaves 'running' (bounded). */
  const settle = async (taskId: string, from = 'PeerA'): Promise<ScheduleResponse> => {
    for (let i = 0; i < 50; i++) {
      const { json } = await schedule(taskId, from, { limit: 0, waitMs: 0 })
      if (json.state !== 'running') {
        return json
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    throw new Error('task never settled')
  }
  const startSupernode = async (): Promise<Supernode> => {
    const sn = new Supernode({ logger: silentLogger() }, { listen: { host: '127.0.0.1', port: 0 }, p2pListen: ['/ip4/127.0.0.1/tcp/0'], dataDir: join(dataDir, 'supernode'), pieceSize: PIECE, clusterKey, allowSource: [origin.url] })
    await sn.start()
    return sn
  }

  beforeAll(async () => {
    origin = await startTestOrigin()
    dataDir = await mkdtemp(join(tmpdir(), 'shoal-supernode-'))
    supernode = await startSupernode()
  })

  afterAll(async () => {
    await Promise.all([...nodes.values()].map(async n => (await n).stop()))
    await supernode.stop()
    await origin.stop()
  })

  it('fetches a source once however many peers register at once, and hands out its pieces', async () => {
    const data = randomBytes(3 * PIECE + 100)
    const { url, digest } = origin.add('/v2/a/blobs/one', data)

    const answers = await Promise.all(Array.from({ length: 8 }, async (_, i) => register(url, digest, `Peer${'ABCDEFGH'[i]}`)))
    expect(new Set(answers.map(a => a.taskId)).size).toBe(1)
    expect(answers[0]).toMatchObject({ contentLength: data.byteLength, pieceSize: PIECE })
    const done = await settle(answers[0]!.taskId)
    expect(done).toMatchObject({ state: 'success', pieceCount: 4 })
    expect(origin.gets.get('/v2/a/blobs/one')).toBe(1)

    const { json } = await schedule(answers[0]!.taskId, 'PeerA', { limit: 10 })
    expect(json.assignments.map(a => [a.num, a.offset, a.length])).toEqual([[0, 0, PIECE], [1, PIECE, PIECE], [2, 2 * PIECE, PIECE], [3, 3 * PIECE, 100]])
    expect(json.assignments[3]?.digest).toBe(sha(data.subarray(3 * PIECE)))
    expect(json.assignments[0]?.sources).toEqual([{ ...supernode.self(), kind: 'supernode' }])
  })

  it('sends a later peer to the peer that reported a piece', async () => {
    const { url, digest } = origin.add('/v2/a/blobs/two', randomBytes(2 * PIECE))
    const { taskId } = await register(url, digest, 'PeerA')
    await settle(taskId)
    const sn = supernode.self().peerId
    await schedule(taskId, 'PeerA', { limit: 0, results: [{ num: 0, ok: true, source: sn }] })
    await register(url, digest, 'PeerB')
    const { json } = await schedule(taskId, 'PeerB', { limit: 2 })
    expect(json.assignments[0]?.sources.map(s => s.kind)).toEqual(['peer', 'supernode'])
    expect(json.assignments[0]?.sources[0]?.peerId).toBe(await id('PeerA'))
    expect(json.assignments[1]?.sources.map(s => s.kind)).toEqual(['supernode'])
  })

  it('stops sending peers to a holder that said it no longer has a piece, without counting it as failing', async () => {
    const { url, digest } = origin.add('/v2/a/blobs/gone-from-a', randomBytes(2 * PIECE))
    const { taskId } = await register(url, digest, 'PeerA')
    await settle(taskId)
    const sn = supernode.self().peerId
    await schedule(taskId, 'PeerA', { limit: 0, results: [{ num: 0, ok: true, source: sn }] })
    await register(url, digest, 'PeerB')
    const sent = await schedule(taskId, 'PeerB', { limit: 2 })
    expect(sent.json.assignments.find(a => a.num === 0)?.sources[0]?.peerId).toBe(await id('PeerA'))
    // PeerA evicted the layer: PeerB's fetch of piece 0 from it found nothing
    await schedule(taskId, 'PeerB', { limit: 0, running: [1], results: [{ num: 0, ok: false, source: await id('PeerA'), code: 'ERR_PIECE_NOT_FOUND' }] })
    const { json } = await schedule(taskId, 'PeerB', { limit: 1, running: [1] })
    expect(json.assignments[0]?.num).toBe(0)
    expect(json.assignments[0]?.sources.map(s => s.kind)).toEqual(['supernode'])
  })

  it('counts a peer asking for a task as a use of it, for the disk quota', async () => {
    const { url, digest } = origin.add('/v2/a/blobs/used', randomBytes(PIECE))
    const { taskId } = await register(url, digest)
    await settle(taskId)
    const before = supernode.store.lastUsed(taskId)
    await new Promise(resolve => setTimeout(resolve, 20))
    await schedule(taskId, 'PeerA', { limit: 0 })
    expect(supernode.store.lastUsed(taskId)).toBeGreaterThan(before)
  })

  it('holds a schedule request until pieces arrive (long poll)', async () => {
    const body = Promise.withResolvers<void>()
    const { url, digest } = origin.add('/v2/a/blobs/slow', randomBytes(PIECE), { holdBody: body.promise })
    // the source has answered with its headers: the task is known, no piece is cut yet
    const { taskId, contentLength } = await register(url, digest)
    expect(contentLength).toBe(PIECE)
    const started = Date.now()
    let answeredAt = 0
    const poll = schedule(taskId, 'PeerA', { limit: 4, waitMs: 8_000 }).then((res) => { answeredAt = Date.now(); return res })
    await new Promise(resolve => setTimeout(resolve, 500))
    // still held: nothing to hand out yet
    expect(answeredAt).toBe(0)
    const releasedAt = Date.now()
    body.resolve()
    const { json } = await poll
    expect(json.assignments.map(a => a.num)).toEqual([0])
    expect(answeredAt - started).toBeGreaterThanOrEqual(500)
    // answered when the piece landed, not when the wait ran out
    expect(answeredAt - releasedAt).toBeLessThan(4_000)
  })

  it('reports the source status when the source refuses', async () => {
    const answer = await register(`${origin.url}/v2/a/blobs/missing`, `sha256:${'1'.repeat(64)}`)
    expect(answer.state).toBe('failed')
    expect(answer.error).toMatchObject({ code: 'ERR_SOURCE_HTTP', sourceStatus: 404 })
  })

  it('refuses a source that is not an allowed upstream with a 403, asking it nothing', async () => {
    // the same server under another name: not what --allow-source named
    const url = `${origin.url.replace('127.0.0.1', 'localhost')}/v2/a/blobs/elsewhere`
    origin.add('/v2/a/blobs/elsewhere', randomBytes(10))
    const answer = await register(url)
    expect(answer.state).toBe('failed')
    expect(answer.error).toMatchObject({ code: 'ERR_SOURCE_REFUSED', sourceStatus: 403 })
    expect(answer.error?.message).toMatch(/allow it with --allow-source localhost:\d+/)
    expect(origin.gets.get('/v2/a/blobs/elsewhere')).toBeUndefined()
  })

  it('withdraws every piece when the content does not match its digest', async () => {
    const data = randomBytes(2 * PIECE)
    const { url } = origin.add('/v2/a/blobs/tampered', data, { serve: randomBytes(2 * PIECE) })
    const { taskId } = await register(url, sha(data))
    const done = await settle(taskId)
    expect(done.state).toBe('failed')
    expect(done.error?.code).toBe('ERR_DIGEST_MISMATCH')
    expect(done.assignments).toEqual([])
    expect(await supernode.store.listPieces(taskId)).toEqual([])
  })

  it('serves a source that sends no Content-Length', async () => {
    const data = randomBytes(PIECE + 5)
    const { url, digest } = origin.add('/files/chunked', data, { chunked: true })
    const answer = await register(url, digest)
    expect(answer.contentLength).toBeNull()
    const done = await settle(answer.taskId)
    expect(done).toMatchObject({ state: 'success', contentLength: PIECE + 5, pieceCount: 2 })
  })

  it.each([
    [{ url: 'http://x/y' }, /peer/],
    [{ url: 'ftp://x/y', peer: 'self' }, /url/],
    [{ url: 'http://x/y', digest: 'sha256:nope', peer: 'self' }, /digest/],
    [{ url: 'http://x/y', peer: { peerId: 'not/a/peer', addrs: [], hostname: 'x' } }, /peerId/]
  ] as Array<[Record<string, unknown>, RegExp]>)('refuses a malformed registration %#', async (body, message) => {
    const res = await call<{ error: { code: string, message: string } }>('PeerA', { op: 'register', body: { ...body, ...(body.peer === 'self' ? { peer: await peer('PeerA') } : {}) } })
    expect(res.status).toBe(400)
    expect(res.json.error.message).toMatch(message)
  })

  it('keeps peers that announce themselves, with their IDC and location, and lets a peer speak only for itself', async () => {
    const peersNow = async (): Promise<number> => (await (await request(`${supernode.url}/api/v1/status`)).body.json() as { peers: number }).peers
    const before = await peersNow()
    const announced = { ...await peer('PeerZ'), idc: 'idc-z', location: 'eu|fra|rack7' }
    expect((await call('PeerZ', { op: 'announce', body: announced })).status).toBe(200)
    // PeerZ was not known before: one more peer
    expect(await peersNow()).toBe(before + 1)
    // and it is offered, with what it declared, as a source of a piece it reported
    const { url: zUrl, digest: zDigest } = origin.add('/v2/a/blobs/from-z', randomBytes(PIECE))
    // a daemon sends the same peer info with every registration
    const zTask = (await call<RegisterTaskResponse>('PeerZ', { op: 'register', body: { url: zUrl, digest: zDigest, peer: announced } })).json.taskId
    await settle(zTask, 'PeerZ')
    await schedule(zTask, 'PeerZ', { limit: 0, results: [{ num: 0, ok: true, source: supernode.self().peerId }] })
    await register(zUrl, zDigest, 'PeerX')
    const { json: fromZ } = await schedule(zTask, 'PeerX', { limit: 1 })
    expect(fromZ.assignments[0]?.sources[0]).toMatchObject({ peerId: await id('PeerZ'), kind: 'peer', idc: 'idc-z', location: 'eu|fra|rack7' })
    // a malformed location is refused with the reason
    const bad = await call<{ error: { message: string } }>('PeerZ', { op: 'announce', body: { ...announced, location: 'eu||fra' } })
    expect(bad.status).toBe(400)
    expect(bad.json.error.message).toMatch(/location/)
    // PeerY cannot announce, leave or report as PeerZ
    expect((await call('PeerY', { op: 'announce', body: await peer('PeerZ') })).status).toBe(403)
    expect((await call('PeerY', { op: 'leave', body: { peerId: await id('PeerZ') } })).status).toBe(403)
    const { url, digest } = origin.add('/v2/a/blobs/own', randomBytes(PIECE))
    const { taskId } = await register(url, digest, 'PeerZ')
    const forged = await call('PeerY', { op: 'schedule', taskId, body: { peerId: await id('PeerZ'), limit: 0 } })
    expect(forged.status).toBe(403)
    expect((await call('PeerY', { op: 'register', body: { url, digest, peer: await peer('PeerZ') } })).status).toBe(403)
    // PeerZ itself can leave
    expect((await call('PeerZ', { op: 'leave', body: { peerId: await id('PeerZ') } })).status).toBe(200)
  })

  it('answers 401 on HTTP to anyone trying the control routes, and changes nothing', async () => {
    const before = await (await request(`${supernode.url}/api/v1/status`)).body.json() as { peers: number }
    const { url, digest } = origin.add('/v2/a/blobs/http', randomBytes(PIECE))
    const attempts: Array<[string, string, unknown]> = [
      ['POST', '/api/v1/tasks', { url, digest, peer: { peerId: 'QmIntruder', addrs: [], hostname: 'x' } }],
      ['POST', `/api/v1/tasks/${'a'.repeat(64)}/schedule`, { peerId: 'QmIntruder' }],
      ['PUT', '/api/v1/peers/QmIntruder', { peerId: 'QmIntruder', addrs: [], hostname: 'x' }],
      ['DELETE', `/api/v1/peers/${await id('PeerA')}`, undefined]
    ]
    for (const [method, path, body] of attempts) {
      const res = await request(`${supernode.url}${path}`, {
        method: method as 'POST',
        ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {})
      })
      expect(res.statusCode, `${method} ${path}`).toBe(401)
      expect((await res.body.json() as { error: { message: string } }).error.message).toMatch(/cluster members/)
    }
    const after = await (await request(`${supernode.url}/api/v1/status`)).body.json() as { peers: number }
    expect(after.peers).toBe(before.peers)
    expect(origin.gets.get('/v2/a/blobs/http')).toBeUndefined()
  })

  it('keeps out a node without the cluster key', async () => {
    const privateKey = await loadOrCreatePrivateKey(join(dataDir, 'peers', 'outsider.key'))
    const outsider = await createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey, clusterKey: parseClusterKey(generateClusterKey()) })
    try {
      await expect(controlCall({ libp2p: outsider }, supernode.self().addrs.map(a => multiaddr(a)), { op: 'announce', body: { peerId: outsider.peerId.toString(), addrs: [], hostname: 'x' } }, { signal: AbortSignal.timeout(5_000) })).rejects.toThrow()
    } finally {
      await outsider.stop()
    }
  })

  it('answers 404 for an unknown task', async () => {
    const res = await schedule('f'.repeat(64), 'PeerA', {})
    expect(res).toEqual({ status: 404, json: { error: expect.objectContaining({ code: 'TASK_NOT_FOUND' }) } })
  })

  it('counts source bytes and scheduling decisions in its metrics', async () => {
    const metrics = async (): Promise<string> => (await request(`${supernode.url}/metrics`)).body.text()
    const value = (text: string, name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN)
    const before = await metrics()
    const size = 3 * PIECE + 17
    const { url, digest } = origin.add('/v2/a/blobs/counted', randomBytes(size))
    const { taskId } = await register(url, digest)
    await settle(taskId)
    await schedule(taskId, 'PeerA', { limit: 2 })
    const after = await metrics()
    // exactly the new source's bytes, not merely a number
    expect(value(after, 'shoal_supernode_source_bytes_total') - value(before, 'shoal_supernode_source_bytes_total')).toBe(size)
    expect(value(after, 'shoal_supernode_schedule_duration_seconds_count')).toBeGreaterThan(value(before, 'shoal_supernode_schedule_duration_seconds_count'))
    expect(after).toMatch(/^shoal_supernode_tasks\{state="success"\} [1-9]/m)
  })

  it('keeps whole tasks across a restart, without going back to the source', async () => {
    const { url, digest } = origin.add('/v2/a/blobs/kept', randomBytes(PIECE * 2))
    const { taskId } = await register(url, digest)
    await settle(taskId)
    await supernode.stop()
    supernode = await startSupernode()
    const again = await register(url, digest)
    expect(again).toMatchObject({ taskId, state: 'success', contentLength: PIECE * 2 })
    expect(origin.gets.get('/v2/a/blobs/kept')).toBe(1)
  })
})
