import { randomBytes } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMetricsRegistry, PieceStore, silentLogger, SourceClient, TaskNotFoundError } from '@shoal/core'
import { SourceFetcher, SupernodeMetrics, TaskManager } from '../src/index.ts'
import { startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'

const PIECE = 64 * 1024
const peer = { peerId: 'QmPeerA', addrs: [], hostname: 'a' }

describe('TaskManager bounds', () => {
  let origin: TestOrigin
  let store: PieceStore
  let source: SourceClient
  let tasks: TaskManager

  beforeAll(async () => {
    origin = await startTestOrigin()
    store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-sn-bounds-')) })
    await store.start()
    source = new SourceClient({ logger: silentLogger() }, { allow: [origin.url] })
    const metrics = new SupernodeMetrics(createMetricsRegistry({ processMetrics: false }))
    const fetcher = new SourceFetcher({ store, source, logger: silentLogger(), metrics }, { pieceSize: PIECE, maxPieces: 4 })
    tasks = new TaskManager({ store, fetcher, logger: silentLogger(), metrics }, {
      failedTaskRetryAfter: 0, failedTaskTtl: 60_000, maxFailedTasks: 2, idleHoldersTtl: 60_000, maxTasksWithHolders: 2
    })
    await tasks.start()
  })

  afterAll(async () => {
    await tasks.stop()
    await source.stop()
    await store.stop()
    await origin.stop()
  })

  const whole = async (path: string, bytes: number): Promise<string> => {
    const { url, digest } = origin.add(path, randomBytes(bytes))
    const task = await tasks.register({ url, digest, peer })
    // bounded: a small source finishes in well under a second
    for (let i = 0; i < 100 && task.state === 'running'; i++) {
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    return task.id
  }

  it('refuses a task whose declared length means too many pieces, with the reason, before reading its body', async () => {
    const { url, digest } = origin.add('/v2/a/blobs/huge', randomBytes(5 * PIECE))
    const task = await tasks.register({ url, digest, peer })
    expect(task.state).toBe('failed')
    expect(task.error).toMatchObject({ code: 'ERR_TOO_MANY_PIECES' })
    expect(task.error?.message).toMatch(/5 pieces of 65536 bytes, more than the 4/)
    expect(task.pieces.size).toBe(0)
    // four pieces is fine
    const ok = await tasks.get(await whole('/v2/a/blobs/four', 4 * PIECE))
    expect(ok.state).toBe('success')
  })

  it('forgets failed tasks after their ttl and beyond the count', async () => {
    const failed: string[] = []
    for (const name of ['f1', 'f2', 'f3']) {
      origin.add(`/v2/a/blobs/${name}`, Buffer.alloc(0), { status: 404 })
      failed.push((await tasks.register({ url: `${origin.url}/v2/a/blobs/${name}`, peer })).id)
    }
    // the failed fetches finish their clean-up
    await new Promise(resolve => setTimeout(resolve, 200))
    const now = Date.now()
    // three failed, two kept: the oldest goes
    expect(tasks.sweep(now).failed).toBeGreaterThanOrEqual(1)
    expect(() => tasks.get(failed[0]!)).toThrow(TaskNotFoundError)
    expect(tasks.get(failed[2]!).state).toBe('failed')
    // a minute later none is kept
    tasks.sweep(now + 61_000)
    for (const id of failed) {
      expect(() => tasks.get(id)).toThrow(TaskNotFoundError)
    }
  })

  it('drops the holder maps of idle tasks, and of the least recently asked beyond the count', async () => {
    const ids = [await whole('/v2/a/blobs/h1', PIECE), await whole('/v2/a/blobs/h2', PIECE), await whole('/v2/a/blobs/h3', PIECE)]
    for (const [i, id] of ids.entries()) {
      const task = tasks.get(id)
      task.addHolder(0, 'QmPeerA')
      task.lastAsked = Date.now() - (3 - i) * 1_000
    }
    tasks.sweep()
    // three with holders, two kept: the least recently asked (h1) lost its map
    expect(ids.map(id => tasks.get(id).holders.size)).toEqual([0, 1, 1])
    // idle past the ttl: gone too, while the task and its pieces stay
    tasks.sweep(Date.now() + 61_000)
    expect(ids.map(id => tasks.get(id).holders.size)).toEqual([0, 0, 0])
    expect(tasks.get(ids[2]!).pieces.size).toBe(1)
  })
})
