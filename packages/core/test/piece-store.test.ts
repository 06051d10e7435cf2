import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  cutIntoPieces, PieceDigestMismatchError, PieceLengthMismatchError, PieceStore, silentLogger, SourceUnavailableError, StoreReadError,
  WRITE_BATCH_BYTES, type StoredPiece
} from '../src/index.ts'

const TASK = 'a'.repeat(64)
const OTHER = 'b'.repeat(64)
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

async function * chunks (data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.byteLength; i += size) {
    yield data.subarray(i, i + size)
  }
}

describe('PieceStore', () => {
  let dir: string
  let store: PieceStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-store-'))
    store = new PieceStore({ logger: silentLogger() }, { dataDir: dir })
    await store.start()
  })

  afterEach(async () => {
    await store.stop()
  })

  it('records a piece only once it is whole and verified, and keeps it across restarts', async () => {
    const data = randomBytes(1000)
    const piece = await store.writePiece(TASK, { num: 1, offset: 1000, length: 1000 }, chunks(data, 300), { expectedDigest: sha(data) })
    expect(piece).toEqual({ num: 1, offset: 1000, length: 1000, digest: sha(data) })

    await store.stop()
    store = new PieceStore({ logger: silentLogger() }, { dataDir: dir })
    await store.start()
    expect(await store.getPiece(TASK, 1)).toEqual(piece)
    expect(await store.getPiece(TASK, 0)).toBeUndefined()
    const file = await readFile(store.dataPath(TASK))
    expect(file.subarray(1000, 2000).equals(data)).toBe(true)
  })

  it('refuses a piece that does not match its digest', async () => {
    const data = randomBytes(100)
    await expect(store.writePiece(TASK, { num: 0, offset: 0, length: 100 }, chunks(data, 100), { expectedDigest: sha(randomBytes(100)) }))
      .rejects.toThrow(PieceDigestMismatchError)
    expect(await store.getPiece(TASK, 0)).toBeUndefined()
  })

  it('refuses bytes past the end of a piece, and a short piece', async () => {
    await expect(store.writePiece(TASK, { num: 0, offset: 0, length: 10 }, chunks(randomBytes(11), 11))).rejects.toThrow(PieceLengthMismatchError)
    await expect(store.writePiece(TASK, { num: 0, offset: 0, length: 10 }, chunks(randomBytes(9), 9))).rejects.toThrow(PieceLengthMismatchError)
    expect(await store.listPieces(TASK)).toEqual([])
  })

  it('writes a piece that arrives in many small chunks, across write batches, byte for byte', async () => {
    const data = randomBytes(WRITE_BATCH_BYTES * 2 + 12345)
    const piece = await store.writePiece(TASK, { num: 3, offset: 5000, length: data.byteLength }, chunks(data, 1000), { expectedDigest: sha(data) })
    expect(piece.length).toBe(data.byteLength)
    const file = await readFile(store.dataPath(TASK))
    expect(file.subarray(5000, 5000 + data.byteLength).equals(data)).toBe(true)
  })

  it('records pieces that finish together, each durable once its commit resolves', async () => {
    const pieces = Array.from({ length: 20 }, () => randomBytes(4096))
    const stored = await Promise.all(pieces.map(async (data, num) =>
      store.writePiece(num % 2 === 0 ? TASK : OTHER, { num, offset: num * 4096, length: 4096 }, chunks(data, 1024), { expectedDigest: sha(data) })))
    expect(stored.map(p => p.num)).toEqual(pieces.map((_, num) => num))

    // what a commit resolved is there after a restart
    await store.stop()
    store = new PieceStore({ logger: silentLogger() }, { dataDir: dir })
    await store.start()
    expect((await store.listPieces(TASK)).map(p => p.num)).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18])
    expect((await store.listPieces(OTHER)).map(p => p.num)).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19])
    const file = await readFile(store.dataPath(OTHER))
    expect(file.subarray(3 * 4096, 4 * 4096).equals(pieces[3]!)).toBe(true)
  })

  it('reads back exactly what was written, and says so when the data file is shorter than its index', async () => {
    const data = randomBytes(10_000)
    await store.writePiece(TASK, { num: 0, offset: 0, length: data.byteLength }, chunks(data, 4096))
    const reader = await store.openReader(TASK)
    try {
      const buf = Buffer.alloc(3000)
      await reader.readFully(buf, 5000)
      expect(buf.equals(data.subarray(5000, 8000))).toBe(true)
      await truncate(store.dataPath(TASK), 6000)
      await expect(reader.readFully(buf, 5000)).rejects.toThrow(StoreReadError)
    } finally {
      await reader.close()
    }
    await rm(store.dataPath(TASK))
    await expect(store.openReader(TASK)).rejects.toThrow(StoreReadError)
  })

  it('lists pieces in order and forgets a deleted task', async () => {
    for (const num of [10, 2, 0]) {
      await store.writePiece(TASK, { num, offset: num * 4, length: 4 }, chunks(randomBytes(4), 4))
    }
    await store.putTask({ taskId: TASK, url: 'http://x/', contentLength: 44, pieceSize: 4, state: 'running', updatedAt: 1 })
    expect((await store.listPieces(TASK)).map(p => p.num)).toEqual([0, 2, 10])
    expect((await store.listTasks()).map(t => t.taskId)).toEqual([TASK])
    await store.deleteTask(TASK)
    expect(await store.listPieces(TASK)).toEqual([])
    expect(await store.getTask(TASK)).toBeUndefined()
  })
})

describe('cutIntoPieces', () => {
  let store: PieceStore

  beforeEach(async () => {
    store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-cut-')) })
    await store.start()
  })

  afterEach(async () => {
    await store.stop()
  })

  it('announces each piece as it is cut, whatever the chunking', async () => {
    const data = randomBytes(2500)
    const seen: StoredPiece[] = []
    const total = await cutIntoPieces(store, TASK, chunks(data, 333), { contentLength: 2500, pieceSize: 1000, onPiece: p => seen.push(p) })
    expect(total).toBe(2500)
    expect(seen.map(p => [p.num, p.offset, p.length])).toEqual([[0, 0, 1000], [1, 1000, 1000], [2, 2000, 500]])
    expect(seen[2]?.digest).toBe(sha(data.subarray(2000)))
  })

  it('handles content whose length is not known up front', async () => {
    const data = randomBytes(2100)
    const seen: StoredPiece[] = []
    await cutIntoPieces(store, TASK, chunks(data, 700), { contentLength: null, pieceSize: 1000, onPiece: p => seen.push(p) })
    expect(seen.map(p => p.length)).toEqual([1000, 1000, 100])
    expect((await readFile(store.dataPath(TASK))).equals(data)).toBe(true)
  })

  it('starts at a later piece for a resumed range', async () => {
    const data = randomBytes(1500)
    const seen: StoredPiece[] = []
    await cutIntoPieces(store, TASK, chunks(data, 512), { contentLength: 2500, pieceSize: 1000, firstPiece: 1, onPiece: p => seen.push(p) })
    expect(seen.map(p => [p.num, p.offset])).toEqual([[1, 1000], [2, 2000]])
  })

  it('fails on a body shorter or longer than announced, recording only whole pieces', async () => {
    const seen: StoredPiece[] = []
    await expect(cutIntoPieces(store, TASK, chunks(randomBytes(1500), 500), { contentLength: 2500, pieceSize: 1000, onPiece: p => seen.push(p) }))
      .rejects.toThrow(SourceUnavailableError)
    expect(seen.map(p => p.num)).toEqual([0])
    expect((await store.listPieces(TASK)).map(p => p.num)).toEqual([0])
    await expect(cutIntoPieces(store, TASK, chunks(randomBytes(2501), 500), { contentLength: 2500, pieceSize: 1000, onPiece: () => {} }))
      .rejects.toThrow(/more than the 2500 bytes/)
  })
})
