import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import {
  diskQuota, InvalidConfigError, pickEvictions, PieceStore, PieceWriter, silentLogger, StoreWriteError, type EvictionCandidate, type TaskDropReason
} from '../src/index.ts'
import type { FileHandle } from 'node:fs/promises'

const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
const id = (c: string): string => c.repeat(64)

describe('pickEvictions', () => {
  const limits = diskQuota({ quota: 1000, highWatermark: 0.9, lowWatermark: 0.5 })
  const c = (taskId: string, bytes: number, lastUsed: number, over: Partial<EvictionCandidate> = {}): EvictionCandidate =>
    ({ taskId, bytes, lastUsed, complete: true, inUse: false, ...over })

  it('evicts nothing under the high watermark, or without a quota', () => {
    expect(pickEvictions(limits, 900, [c('a', 900, 1)])).toEqual([])
    expect(pickEvictions(diskQuota(), 1e12, [c('a', 1e12, 1)])).toEqual([])
  })

  it('evicts least recently used complete tasks nobody uses, down to the low watermark', () => {
    const candidates = [c('new', 200, 30), c('old', 200, 10), c('busy', 300, 1, { inUse: true }), c('partial', 100, 2, { complete: false }), c('mid', 200, 20)]
    expect(pickEvictions(limits, 1000, candidates)).toEqual(['old', 'mid', 'new'].slice(0, 3))
    expect(pickEvictions(limits, 950, candidates)).toEqual(['old', 'mid', 'new'])
    expect(pickEvictions(limits, 920, [c('old', 500, 1), c('new', 500, 2)])).toEqual(['old'])
  })

  it('frees what a failed write needs when forced', () => {
    expect(pickEvictions(diskQuota(), 1000, [c('a', 300, 2), c('b', 300, 1)], { force: true, need: 100 })).toEqual(['b'])
  })

  it('refuses watermarks out of order', () => {
    expect(() => diskQuota({ quota: 1, highWatermark: 0.5, lowWatermark: 0.8 })).toThrow(InvalidConfigError)
    expect(() => diskQuota({ quota: -1 })).toThrow(InvalidConfigError)
  })
})

describe('PieceStore disk quota and integrity', () => {
  const stores: PieceStore[] = []
  afterEach(async () => {
    await Promise.all(stores.splice(0).map(async s => { await s.stop() }))
  })

  const tick = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 5)) }
  const open = async (quota = 0, dir?: string, lowWatermark = 0.5): Promise<{ store: PieceStore, dir: string }> => {
    const dataDir = dir ?? await mkdtemp(join(tmpdir(), 'shoal-quota-'))
    const store = new PieceStore({ logger: silentLogger() }, { dataDir, disk: { quota, highWatermark: 0.9, lowWatermark } })
    await store.start()
    stores.push(store)
    return { store, dir: dataDir }
  }

  const complete = async (store: PieceStore, taskId: string, bytes: number): Promise<void> => {
    const data = randomBytes(bytes)
    await store.putTask({ taskId, url: `http://o/${taskId}`, contentLength: bytes, pieceSize: bytes, state: 'success', updatedAt: Date.now() })
    await store.writePiece(taskId, { num: 0, offset: 0, length: bytes }, (async function * () { yield data })(), { expectedDigest: sha(data) })
  }

  it('counts the bytes it holds, and evicts the least recently used complete task nobody reads once over the high watermark', async () => {
    const { store } = await open(10_000, undefined, 0.7)
    const dropped: Array<[string, TaskDropReason]> = []
    store.onTaskDropped((taskId, reason) => { dropped.push([taskId, reason]) })
    await complete(store, id('a'), 3000)
    await tick()
    await complete(store, id('b'), 3000)
    expect(store.bytesStored).toBe(6000)
    // a is older, but a reader holds it: b goes instead, and that is enough
    const reader = await store.openReader(id('a'))
    await tick()
    await complete(store, id('c'), 3500)
    await store.evict()
    expect(dropped).toEqual([[id('b'), 'evicted']])
    expect(await store.getTask(id('b'))).toBeUndefined()
    expect(await store.listPieces(id('b'))).toEqual([])
    expect(store.bytesStored).toBe(6500)
    await reader.close()

    // a was last read before c was written: it is the least recently used now
    await tick()
    await complete(store, id('d'), 3000)
    await store.evict()
    expect(dropped.map(d => d[0])).toEqual([id('b'), id('a')])
    expect(store.bytesStored).toBe(6500)
  })

  it('never evicts a task being written or read', async () => {
    const { store } = await open(1000)
    await store.putTask({ taskId: id('a'), url: 'http://o/a', contentLength: 2000, pieceSize: 1000, state: 'success', updatedAt: 0 })
    const writer = await store.openPieceWriter(id('a'), { num: 1, offset: 1000, length: 1000 })
    const data = randomBytes(1000)
    await store.writePiece(id('a'), { num: 0, offset: 0, length: 1000 }, (async function * () { yield data })())
    expect(await store.evict({ force: true, need: 1 })).toEqual([])
    await writer.abort()
    const unpin = store.pin(id('a'))
    expect(await store.evict()).toEqual([])
    unpin()
    expect(await store.evict()).toEqual([id('a')])
    expect(store.bytesStored).toBe(0)
  })

  it('drops, at start, pieces whose data file is gone or shorter than they end', async () => {
    const { store, dir } = await open()
    await store.putTask({ taskId: id('a'), url: 'http://o/a', contentLength: 3000, pieceSize: 1000, state: 'success', updatedAt: 0 })
    for (const num of [0, 1, 2]) {
      const data = randomBytes(1000)
      await store.writePiece(id('a'), { num, offset: num * 1000, length: 1000 }, (async function * () { yield data })())
    }
    await complete(store, id('b'), 500)
    await store.stop()
    stores.length = 0
    await truncate(store.dataPath(id('a')), 2500)
    await rm(store.dataPath(id('b')))
    const { store: again } = await open(0, dir)
    expect((await again.listPieces(id('a'))).map(p => p.num)).toEqual([0, 1])
    expect(await again.listPieces(id('b'))).toEqual([])
    expect(again.bytesStored).toBe(2000)
  })

  it('a write the disk refuses (ENOSPC) is a StoreWriteError and records nothing', async () => {
    let recorded = 0
    let closed = 0
    const enospc = Object.assign(new Error('no space left on device'), { code: 'ENOSPC' })
    const file = {
      writev: async () => { throw enospc },
      close: async () => { closed++ }
    } as unknown as FileHandle
    const writer = new PieceWriter(file, { num: 0, offset: 0, length: 2 * 1024 * 1024 }, {}, async () => { recorded++ })
    const err = await writer.write(Buffer.alloc(2 * 1024 * 1024)).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(StoreWriteError)
    expect((err as StoreWriteError).sysCode).toBe('ENOSPC')
    await writer.abort()
    expect(recorded).toBe(0)
    expect(closed).toBe(1)
  })
})
