import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { silentLogger, type RegisterTaskResponse, type ScheduleResponse } from '@shoal/core'
import { Supernode } from '../src/index.ts'
import { startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'

const PIECE = 64 * 1024
const peer = (peerId: string): object => ({ peerId, addrs: [`/ip4/127.0.0.1/tcp/9/p2p/${peerId}`], hostname: peerId })
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

describe('supernode HTTP API', () => {
  let origin: TestOrigin
  let supernode: Supernode
  let dataDir: string

  const post = async <T>(path: string, body: unknown): Promise<{ status: number, json: T }> => {
    const res = await request(`${supernode.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
    return { status: res.statusCode, json: await res.body.json() as T }
  }
  const register = async (url: string, digest?: string, peerId = 'PeerA'): Promise<RegisterTaskResponse> => {
    const res = await post<RegisterTaskResponse>('/api/v1/tasks', { url, ...(digest != null ? { digest } : {}), peer: peer(peerId) })
    expect(res.status).toBe(200)
    return res.json
  }
  /** Long-polls until the task leaves 'running' (bounded). */
  const settle = async (taskId: string, peerId = 'PeerA'): Promise<ScheduleResponse> => {
    for (let i = 0; i < 50; i++) {
      const { json } = await post<ScheduleResponse>(`/api/v1/tasks/${taskId}/schedule`, { peerId, limit: 0, waitMs: 0 })
      if (json.state !== 'running') {
        return json
      }
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    throw new Error('task never settled')
  }

  beforeAll(async () => {
    origin = await startTestOrigin()
    dataDir = await mkdtemp(join(tmpdir(), 'shoal-supernode-'))
    supernode = new Supernode({ logger: silentLogger() }, { listen: { host: '127.0.0.1', port: 0 }, p2pListen: ['/ip4/127.0.0.1/tcp/0'], dataDir, pieceSize: PIECE, allowSource: [origin.url] })
    await supernode.start()
  })

  afterAll(async () => {
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

    const { json } = await post<ScheduleResponse>(`/api/v1/tasks/${answers[0]!.taskId}/schedule`, { peerId: 'PeerA', limit: 10 })
    expect(json.assignments.map(a => [a.num, a.offset, a.length])).toEqual([[0, 0, PIECE], [1, PIECE, PIECE], [2, 2 * PIECE, PIECE], [3, 3 * PIECE, 100]])
    expect(json.assignments[3]?.digest).toBe(sha(data.subarray(3 * PIECE)))
    expect(json.assignments[0]?.sources).toEqual([{ ...supernode.self(), kind: 'supernode' }])
  })

  it('sends a later peer to the peer that reported a piece', async () => {
    const { url, digest } = origin.add('/v2/a/blobs/two', randomBytes(2 * PIECE))
    const { taskId } = await register(url, digest, 'PeerA')
    await settle(taskId)
    const sn = supernode.self().peerId
    await post(`/api/v1/tasks/${taskId}/schedule`, { peerId: 'PeerA', limit: 0, results: [{ num: 0, ok: true, source: sn }] })
    await register(url, digest, 'PeerB')
    const { json } = await post<ScheduleResponse>(`/api/v1/tasks/${taskId}/schedule`, { peerId: 'PeerB', limit: 2 })
    expect(json.assignments[0]?.sources.map(s => s.kind)).toEqual(['peer', 'supernode'])
    expect(json.assignments[0]?.sources[0]?.peerId).toBe('PeerA')
    expect(json.assignments[1]?.sources.map(s => s.kind)).toEqual(['supernode'])
  })

  it('holds a schedule request until pieces arrive (long poll)', async () => {
    const { url, digest } = origin.add('/v2/a/blobs/slow', randomBytes(PIECE), { delayMs: 300 })
    const { taskId } = await register(url, digest)
    const started = Date.now()
    const { json } = await post<ScheduleResponse>(`/api/v1/tasks/${taskId}/schedule`, { peerId: 'PeerA', limit: 4, waitMs: 5_000 })
    expect(json.assignments.map(a => a.num)).toEqual([0])
    expect(Date.now() - started).toBeLessThan(4_000)
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
    [{ url: 'ftp://x/y', peer: peer('PeerA') }, /url/],
    [{ url: 'http://x/y', digest: 'sha256:nope', peer: peer('PeerA') }, /digest/],
    [{ url: 'http://x/y', peer: { ...peer('PeerA'), peerId: 'not/a/peer' } }, /peerId/]
  ])('refuses a malformed registration %#', async (body, message) => {
    const res = await post<{ error: { code: string, message: string } }>('/api/v1/tasks', body)
    expect(res.status).toBe(400)
    expect(res.json.error.message).toMatch(message)
  })

  it('keeps peers that announce themselves, and checks who they say they are', async () => {
    const put = async (path: string, body: unknown): Promise<number> => {
      const res = await request(`${supernode.url}${path}`, { method: 'PUT', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } })
      await res.body.dump()
      return res.statusCode
    }
    expect(await put('/api/v1/peers/PeerZ', peer('PeerZ'))).toBe(200)
    expect(await put('/api/v1/peers/PeerZ', peer('PeerY'))).toBe(400)
    const status = await request(`${supernode.url}/api/v1/status`)
    expect((await status.body.json() as { peers: number }).peers).toBeGreaterThanOrEqual(1)
    const del = await request(`${supernode.url}/api/v1/peers/PeerZ`, { method: 'DELETE' })
    expect(del.statusCode).toBe(200)
    await del.body.dump()
  })

  it('answers 404 for an unknown task', async () => {
    const res = await post<{ error: { code: string } }>(`/api/v1/tasks/${'f'.repeat(64)}/schedule`, { peerId: 'PeerA' })
    expect(res).toEqual({ status: 404, json: { error: expect.objectContaining({ code: 'TASK_NOT_FOUND' }) } })
  })

  it('counts source bytes in its metrics', async () => {
    const res = await request(`${supernode.url}/metrics`)
    const text = await res.body.text()
    expect(text).toMatch(/^shoal_supernode_source_bytes_total \d+/m)
    expect(text).toMatch(/^shoal_supernode_tasks\{state="success"\} [1-9]/m)
  })

  it('keeps whole tasks across a restart, without going back to the source', async () => {
    const { url, digest } = origin.add('/v2/a/blobs/kept', randomBytes(PIECE * 2))
    const { taskId } = await register(url, digest)
    await settle(taskId)
    await supernode.stop()
    supernode = new Supernode({ logger: silentLogger() }, { listen: { host: '127.0.0.1', port: 0 }, p2pListen: ['/ip4/127.0.0.1/tcp/0'], dataDir, pieceSize: PIECE, allowSource: [origin.url] })
    await supernode.start()
    const again = await register(url, digest)
    expect(again).toMatchObject({ taskId, state: 'success', contentLength: PIECE * 2 })
    expect(origin.gets.get('/v2/a/blobs/kept')).toBe(1)
  })
})
