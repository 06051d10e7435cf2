import { randomBytes } from 'node:crypto'
import { rm, truncate } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { taskIdFor } from '@shoal/core'
import { sample, scrape } from '../../../test/harness/metrics.ts'
import { sha256, startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'
import { startSwarm, type TestSwarm } from './fixtures/swarm.ts'
import type { Daemon } from '../src/index.ts'

const PIECE = 64 * 1024

/** Reads a response to the end; `complete` only for a 200 whose body arrived whole. */
async function pull (url: string): Promise<{ status: number, body: Buffer, complete: boolean }> {
  const chunks: Buffer[] = []
  let status = 0
  try {
    const res = await request(url, { signal: AbortSignal.timeout(15_000) })
    status = res.statusCode
    for await (const chunk of res.body) {
      chunks.push(chunk as Buffer)
    }
    return { status, body: Buffer.concat(chunks), complete: status === 200 }
  } catch {
    return { status, body: Buffer.concat(chunks), complete: false }
  }
}

describe('store integrity: a damaged data file is fetched again', () => {
  let origin: TestOrigin
  let swarm: TestSwarm
  let a: Daemon
  let b: Daemon

  beforeAll(async () => {
    origin = await startTestOrigin()
    swarm = await startSwarm(origin.url, { daemons: 2, pieceSize: PIECE })
    ;[a, b] = swarm.daemons as [Daemon, Daemon]
  })

  afterAll(async () => {
    await swarm.stop()
    await origin.stop()
  })

  const layer = (pieces: number): { data: Buffer, path: string, taskId: string } => {
    const data = randomBytes(pieces * PIECE + 11)
    const digest = sha256(data)
    const path = `/v2/library/app/blobs/${digest}`
    origin.add(path, data)
    return { data, path, taskId: taskIdFor({ url: `${origin.url}${path}`, digest }) }
  }

  it('data file deleted under the index: the next pull succeeds', async () => {
    const { data, path, taskId } = layer(3)
    expect((await pull(`${a.url}${path}`)).body.equals(data)).toBe(true)
    await rm(a.store.dataPath(taskId))

    const next = await pull(`${a.url}${path}`)
    expect(next.complete).toBe(true)
    expect(next.body.equals(data)).toBe(true)
  })

  it('data file truncated: the next pull succeeds, no loop', async () => {
    const { data, path, taskId } = layer(4)
    expect((await pull(`${a.url}${path}`)).body.equals(data)).toBe(true)
    await truncate(a.store.dataPath(taskId), PIECE + 5)

    const started = performance.now()
    const next = await pull(`${a.url}${path}`)
    expect(next.complete).toBe(true)
    expect(next.body.equals(data)).toBe(true)
    expect(performance.now() - started).toBeLessThan(10_000)
  })

  it('a peer whose data file is gone is not asked forever: the other host still pulls', async () => {
    const { data, path, taskId } = layer(3)
    expect((await pull(`${a.url}${path}`)).body.equals(data)).toBe(true)
    await truncate(a.store.dataPath(taskId), 0)
    await rm(swarm.supernode.store.dataPath(taskId))

    const started = performance.now()
    const res = await pull(`${b.url}${path}`)
    expect(res.complete).toBe(true)
    expect(res.body.equals(data)).toBe(true)
    expect(performance.now() - started).toBeLessThan(10_000)
  })

  it('at start the store drops pieces whose data is missing or short', async () => {
    const { data, path, taskId } = layer(3)
    expect((await pull(`${b.url}${path}`)).body.equals(data)).toBe(true)
    await b.store.stop()
    await truncate(b.store.dataPath(taskId), 2 * PIECE)
    await b.store.start()
    const pieces = await b.store.listPieces(taskId)
    expect(pieces.map(p => p.num)).toEqual([0, 1])
  })
})

describe('disk quota: least recently used layers make room, and are fetched again when wanted', () => {
  let origin: TestOrigin
  let swarm: TestSwarm

  beforeAll(async () => {
    origin = await startTestOrigin()
    swarm = await startSwarm(origin.url, { daemons: 0, pieceSize: PIECE, supernodeInit: { diskQuota: 10 * PIECE, diskHighWatermark: 0.9, diskLowWatermark: 0.7 } })
  })

  afterAll(async () => {
    await swarm.stop()
    await origin.stop()
  })

  const metric = async (url: string, name: string): Promise<number> => sample(await scrape(`${url}/metrics`), name)

  it('the daemon and the supernode evict the oldest complete layer over the high watermark; a peer asking for it gets NOT_FOUND, the next pull fetches it again', async () => {
    const d = await swarm.addDaemon({ init: { diskQuota: 10 * PIECE, diskHighWatermark: 0.9, diskLowWatermark: 0.7 } })
    const layers = [0, 1].map(() => {
      const data = randomBytes(4 * PIECE)
      const digest = sha256(data)
      const path = `/v2/library/app/blobs/${digest}`
      origin.add(path, data)
      return { data, path, taskId: taskIdFor({ url: `${origin.url}${path}`, digest }) }
    })
    const [first, second] = layers as [typeof layers[0], typeof layers[0]]
    expect((await pull(`${d.url}${first.path}`)).body.equals(first.data)).toBe(true)
    expect(await metric(d.url, 'shoal_dfget_disk_bytes')).toBe(4 * PIECE)
    await new Promise(resolve => setTimeout(resolve, 10))
    expect((await pull(`${d.url}${second.path}`)).body.equals(second.data)).toBe(true)

    // 8 of 10 pieces is under 0.9: nothing evicted yet; a third layer goes over
    const third = randomBytes(2 * PIECE)
    const thirdPath = `/v2/library/app/blobs/${sha256(third)}`
    origin.add(thirdPath, third)
    expect((await pull(`${d.url}${thirdPath}`)).body.equals(third)).toBe(true)
    await d.store.evict()
    await swarm.supernode.store.evict()

    expect(await d.store.getTask(first.taskId)).toBeUndefined()
    expect(await d.store.getTask(second.taskId)).toBeDefined()
    expect(await metric(d.url, 'shoal_dfget_evictions_total')).toBeGreaterThanOrEqual(1)
    expect(await metric(d.url, 'shoal_dfget_disk_bytes')).toBeLessThanOrEqual(7 * PIECE)
    expect(await metric(swarm.supernode.url, 'shoal_supernode_evictions_total')).toBeGreaterThanOrEqual(1)
    expect(() => swarm.supernode.tasks.get(first.taskId)).toThrow()
    expect(await swarm.supernode.store.getPiece(first.taskId, 0)).toBeUndefined()

    const gets = origin.gets.get(first.path) ?? 0
    const again = await pull(`${d.url}${first.path}`)
    expect(again.complete).toBe(true)
    expect(again.body.equals(first.data)).toBe(true)
    expect(origin.gets.get(first.path)).toBe(gets + 1)
  })
})
