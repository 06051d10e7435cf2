import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createMetricsRegistry, createP2PNode, loadOrCreatePrivateKey, PieceServer, PieceStore, silentLogger, TokenBucket, type PieceSource } from '@shoal/core'
import { downloadToFile, PieceFetcher } from '../src/index.ts'
import { sample, scrape } from '../../../test/harness/metrics.ts'
import { startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'
import { startSwarm, type TestSwarm } from './fixtures/swarm.ts'
import type { Libp2p } from 'libp2p'

const MiB = 1024 * 1024
const TASK = 'e'.repeat(64)
const sha = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

// Lower bounds on time only: a loaded machine makes transfers slower, never faster. Each
// transfer is 4 MiB at 1 MiB/s with a 1 MiB burst, so at least 3 s when the limit holds;
// unlimited, it takes well under a second on loopback.
const RATE = MiB
const SIZE = 4 * MiB
const AT_LEAST_MS = 2_500

describe('rate limits', () => {
  let swarm: TestSwarm | undefined
  let origin: TestOrigin | undefined
  let node: Libp2p | undefined
  let store: PieceStore | undefined
  let dir: string
  const signal = new AbortController().signal

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-rate-'))
  })

  afterEach(async () => {
    await node?.stop()
    await store?.stop()
    await swarm?.stop()
    await origin?.stop()
    node = undefined
    store = undefined
    swarm = undefined
    origin = undefined
  })

  it('a daemon with --upload-rate serves a peer at about that rate', async () => {
    swarm = await startSwarm('http://127.0.0.1:9', { daemons: 0 })
    const holder = await swarm.addDaemon({ supernode: null, init: { uploadRate: RATE } })
    const data = randomBytes(SIZE)
    await holder.store.writePiece(TASK, { num: 0, offset: 0, length: data.byteLength }, (async function * () { yield data })())

    const privateKey = await loadOrCreatePrivateKey(join(await mkdtemp(join(tmpdir(), 'shoal-key-')), 'peer.key'))
    node = await createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey, clusterKey: swarm.clusterKey })
    store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-rate-store-')) })
    await store.start()
    const fetcher = new PieceFetcher({ libp2p: node, store }, { timeout: 60_000 })
    const self = holder.self()
    const source: PieceSource = { peerId: self.peerId, addrs: self.addrs, kind: 'peer' }

    let received = 0
    const started = performance.now()
    const piece = await fetcher.fetch(TASK, { num: 0, offset: 0, length: SIZE, digest: sha(data), sources: [source] }, source, {
      signal, onBytes: (n) => { received += n }
    })
    const ms = performance.now() - started

    expect(piece.digest).toBe(sha(data))
    expect(received).toBe(SIZE)
    expect(ms).toBeGreaterThanOrEqual(AT_LEAST_MS)
    const metrics = await scrape(`${holder.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_upload_bytes_total')).toBe(SIZE)
    expect(sample(metrics, 'shoal_dfget_rate_limited_seconds_total', { direction: 'upload' })).toBeGreaterThan(1)
    expect(sample(metrics, 'shoal_dfget_rate_limited_seconds_total', { direction: 'download' })).toBe(0)
  })

  it('time spent waiting for tokens is not the piece timeout (server) nor the source\'s silence (fetcher)', async () => {
    const clusterKey = (await startSwarm('http://127.0.0.1:9', { daemons: 0 }).then(s => { swarm = s; return s })).clusterKey
    const libp2p = async (): Promise<Libp2p> => createP2PNode({
      listen: ['/ip4/127.0.0.1/tcp/0'], clusterKey, privateKey: await loadOrCreatePrivateKey(join(await mkdtemp(join(tmpdir(), 'shoal-key-')), 'peer.key'))
    })
    const [holder, fetcherNode] = await Promise.all([libp2p(), libp2p()])
    const [holderStore, fetcherStore] = [
      new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-rate-h-')) }),
      new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-rate-f-')) })
    ]
    await Promise.all([holderStore.start(), fetcherStore.start()])
    const data = randomBytes(MiB)
    await holderStore.writePiece(TASK, { num: 0, offset: 0, length: data.byteLength }, (async function * () { yield data })())
    // the whole piece may take 800 ms, yet the limit (a 256 KiB frame every 0.5 s, within
    // the fetcher's idle timeout) makes it take at least 1.5 s
    const server = new PieceServer({ libp2p: holder, store: holderStore, logger: silentLogger(), metrics: createMetricsRegistry({ processMetrics: false }), uploadLimit: new TokenBucket({}, { rate: 512 * 1024, burst: 256 * 1024 }) },
      { metricPrefix: 'test', pieceTimeout: 800 })
    await server.start()
    try {
      const source: PieceSource = { peerId: holder.peerId.toString(), addrs: holder.getMultiaddrs().map(String), kind: 'peer' }
      const assignment = { num: 0, offset: 0, length: data.byteLength, digest: sha(data), sources: [source] }
      // connected first: the handshake is not what the short timeouts are about
      await fetcherNode.dial(holder.getMultiaddrs())
      const started = performance.now()
      // and the fetcher's own limit holds each frame back 1.33 s, longer than its idle timeout
      const fetcher = new PieceFetcher({ libp2p: fetcherNode, store: fetcherStore, downloadLimit: new TokenBucket({}, { rate: 192 * 1024, burst: 256 * 1024 }) }, { idleTimeout: 800, timeout: 60_000 })
      const piece = await fetcher.fetch(TASK, assignment, source, { signal })
      expect(piece.digest).toBe(sha(data))
      expect(performance.now() - started).toBeGreaterThanOrEqual(3_000)
    } finally {
      await server.stop()
      await Promise.all([holder.stop(), fetcherNode.stop(), holderStore.stop(), fetcherStore.stop()])
    }
  })

  it('a daemon with --download-rate takes pieces from the swarm at about that rate', async () => {
    origin = await startTestOrigin()
    const data = randomBytes(SIZE)
    const { url, digest } = origin.add('/blobs/swarm', data)
    swarm = await startSwarm(origin.url, { daemons: 0, pieceSize: 256 * 1024 })
    const daemon = await swarm.addDaemon({ init: { downloadRate: RATE } })

    const started = performance.now()
    const output = join(dir, 'swarm.bin')
    await downloadToFile({ url, output, digest, headers: {}, daemon: daemon.url, timeout: 60_000, signal })
    const ms = performance.now() - started

    expect((await readFile(output)).equals(data)).toBe(true)
    expect(ms).toBeGreaterThanOrEqual(AT_LEAST_MS)
    const metrics = await scrape(`${daemon.url}/metrics`)
    // through the swarm, not the origin
    expect(sample(metrics, 'shoal_dfget_download_bytes_total', { source: 'supernode' })).toBe(SIZE)
    expect(sample(metrics, 'shoal_dfget_rate_limited_seconds_total', { direction: 'download' })).toBeGreaterThan(1)
  })

  it('a daemon with --download-rate reads the origin at about that rate', async () => {
    origin = await startTestOrigin()
    const data = randomBytes(SIZE)
    const { url, digest } = origin.add('/blobs/origin', data)
    swarm = await startSwarm(origin.url, { daemons: 0 })
    const daemon = await swarm.addDaemon({ supernode: null, init: { downloadRate: RATE } })

    const started = performance.now()
    const output = join(dir, 'origin.bin')
    await downloadToFile({ url, output, digest, headers: {}, daemon: daemon.url, timeout: 60_000, signal })
    const ms = performance.now() - started

    expect((await readFile(output)).equals(data)).toBe(true)
    expect(ms).toBeGreaterThanOrEqual(AT_LEAST_MS)
    const metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_download_bytes_total', { source: 'origin' })).toBe(SIZE)
    expect(sample(metrics, 'shoal_dfget_rate_limited_seconds_total', { direction: 'download' })).toBeGreaterThan(1)
  })
})
