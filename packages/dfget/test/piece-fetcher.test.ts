import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createMetricsRegistry, createP2PNode, FramedStream, generateClusterKey, loadOrCreatePrivateKey, MAX_CONTROL_MESSAGE, parseClusterKey, PIECE_PROTOCOL, PieceDigestMismatchError, PieceNotFoundError,
  PieceServer, PieceStore, PieceTimeoutError, silentLogger, type PieceAssignment, type PieceSource
} from '@shoal/core'
import { PieceFetcher } from '../src/index.ts'
import type { Libp2p } from 'libp2p'

const TASK = 'd'.repeat(64)
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

const clusterKey = parseClusterKey(generateClusterKey())

async function node (): Promise<Libp2p> {
  const privateKey = await loadOrCreatePrivateKey(join(await mkdtemp(join(tmpdir(), 'shoal-key-')), 'peer.key'))
  return createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey, clusterKey })
}

async function store (): Promise<PieceStore> {
  const s = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-pf-')) })
  await s.start()
  return s
}

describe('piece transfer over /shoal/piece/1.0.0', () => {
  let holder: Libp2p
  let fetcherNode: Libp2p
  let holderStore: PieceStore
  let fetcherStore: PieceStore
  let server: PieceServer
  let fetcher: PieceFetcher
  let source: PieceSource
  const data = randomBytes(3 * 1024 * 1024 + 17)

  beforeAll(async () => {
    ;[holder, fetcherNode] = await Promise.all([node(), node()])
    ;[holderStore, fetcherStore] = await Promise.all([store(), store()])
    await holderStore.writePiece(TASK, { num: 0, offset: 0, length: data.byteLength }, (async function * () { yield data })())
    server = new PieceServer({ libp2p: holder, store: holderStore, logger: silentLogger(), metrics: createMetricsRegistry({ processMetrics: false }) }, { metricPrefix: 'test' })
    await server.start()
    fetcher = new PieceFetcher({ libp2p: fetcherNode, store: fetcherStore }, { timeout: 10_000 })
    source = { peerId: holder.peerId.toString(), addrs: holder.getMultiaddrs().map(String), kind: 'peer' }
  })

  afterAll(async () => {
    await server.stop()
    await Promise.all([holder.stop(), fetcherNode.stop(), holderStore.stop(), fetcherStore.stop()])
  })

  const assignment = (over: Partial<PieceAssignment> = {}): PieceAssignment =>
    ({ num: 0, offset: 0, length: data.byteLength, digest: sha(data), sources: [source], ...over })

  it('fetches a verified piece into the store', async () => {
    const piece = await fetcher.fetch(TASK, assignment(), source)
    expect(piece).toEqual({ num: 0, offset: 0, length: data.byteLength, digest: sha(data) })
    expect(await fetcherStore.getPiece(TASK, 0)).toEqual(piece)
  })

  it('refuses a piece whose digest is not the one the supernode gave', async () => {
    await expect(fetcher.fetch(TASK, { ...assignment(), digest: sha(Buffer.from('other')) }, source)).rejects.toThrow(PieceDigestMismatchError)
  })

  it('answers NOT_FOUND for a piece it lacks, or one it cut differently', async () => {
    await expect(fetcher.fetch(TASK, assignment({ num: 1, offset: data.byteLength }), source)).rejects.toThrow(PieceNotFoundError)
    await expect(fetcher.fetch(TASK, assignment({ length: 1024 }), source)).rejects.toThrow(PieceNotFoundError)
  })

  it('answers NOT_FOUND for a recorded piece whose data file is gone', async () => {
    const lost = 'f'.repeat(64)
    const bytes = randomBytes(1000)
    await holderStore.writePiece(lost, { num: 0, offset: 0, length: 1000 }, (async function * () { yield bytes })())
    await rm(holderStore.dataPath(lost))
    await expect(fetcher.fetch(lost, { num: 0, offset: 0, length: 1000, digest: sha(bytes), sources: [source] }, source)).rejects.toThrow(PieceNotFoundError)
  })

  it('answers NOT_FOUND for a recorded piece whose data file is short, and stops holding it', async () => {
    const short = 'e'.repeat(64)
    const bytes = randomBytes(1000)
    await holderStore.writePiece(short, { num: 0, offset: 0, length: 1000 }, (async function * () { yield bytes })())
    await truncate(holderStore.dataPath(short), 600)
    await expect(fetcher.fetch(short, { num: 0, offset: 0, length: 1000, digest: sha(bytes), sources: [source] }, source)).rejects.toThrow(PieceNotFoundError)
    expect(await holderStore.getPiece(short, 0)).toBeUndefined()
  })

  it('gives up on an unreachable source within its timeout', async () => {
    const stranger = await node()
    const dead: PieceSource = { peerId: stranger.peerId.toString(), addrs: ['/ip4/127.0.0.1/tcp/9'], kind: 'peer' }
    await stranger.stop()
    const quick = new PieceFetcher({ libp2p: fetcherNode, store: fetcherStore }, { timeout: 2_000 })
    const started = Date.now()
    await expect(quick.fetch(TASK, assignment(), dead)).rejects.toThrow()
    expect(Date.now() - started).toBeLessThan(5_000)
  })

  it('drops a source that starts a piece and then stalls, once it has been silent for the idle timeout', async () => {
    // a peer that answers "ok", sends one frame and then nothing, keeping the stream open
    const staller = await node()
    await staller.handle(PIECE_PROTOCOL, async (stream) => {
      const framed = new FramedStream(stream, { maxFrameLength: MAX_CONTROL_MESSAGE })
      await framed.readFrame()
      await framed.writeJson({ status: 'ok', length: data.byteLength, digest: sha(data) })
      await framed.writeFrame(data.subarray(0, 1024))
    })
    const stalling: PieceSource = { peerId: staller.peerId.toString(), addrs: staller.getMultiaddrs().map(String), kind: 'peer' }
    const progress: number[] = []
    const quick = new PieceFetcher({ libp2p: fetcherNode, store: fetcherStore }, { idleTimeout: 500 })
    const started = Date.now()
    try {
      const err = await quick.fetch(TASK, assignment({ num: 0 }), stalling, { onBytes: (n) => progress.push(n) }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(PieceTimeoutError)
      expect((err as PieceTimeoutError).code).toBe('ERR_PIECE_TIMEOUT')
      expect(progress).toEqual([1024])
      expect(Date.now() - started).toBeLessThan(3_000)
    } finally {
      await staller.stop()
    }
  })
})
