import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { downloadToFile } from '../src/index.ts'
import { sample, scrape } from '../../../test/harness/metrics.ts'
import { startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'
import { startSwarm, type TestSwarm } from './fixtures/swarm.ts'

const PIECE = 64 * 1024

describe('a bounded swarm: the pull completes when the swarm cannot deliver', () => {
  let origin: TestOrigin | undefined
  let swarm: TestSwarm | undefined
  let dir: string
  const signal = new AbortController().signal

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-fallback-'))
  })

  afterEach(async () => {
    await swarm?.stop()
    await origin?.stop()
    swarm = undefined
    origin = undefined
  })

  it('goes back to the origin with the client headers within the no-progress time when the supernode source stalls', async () => {
    const NO_PROGRESS = 2_000
    origin = await startTestOrigin()
    const data = randomBytes(16 * PIECE)
    // the supernode's fetch (the first GET) sends a piece and a half, then nothing
    const { url, digest } = origin.add('/blobs/stall', data, { stallFirstAfter: PIECE + PIECE / 2 })
    swarm = await startSwarm(origin.url, { daemons: 1, pieceSize: PIECE, init: { swarmNoProgressTimeout: NO_PROGRESS } })
    const daemon = swarm.daemons[0]!

    const started = performance.now()
    const output = join(dir, 'stall.bin')
    await downloadToFile({ url, output, digest, headers: { authorization: 'Bearer client-token' }, daemon: daemon.url, timeout: 60_000, signal })
    const ms = performance.now() - started

    expect((await readFile(output)).equals(data)).toBe(true)
    // without the bound, a long poll (10 s) outlasts the no-progress time before the daemon notices
    expect(ms).toBeLessThan(NO_PROGRESS + 6_000)
    const gets = origin.headers.get('/blobs/stall') ?? []
    expect(gets.length).toBe(2)
    // the fallback is the daemon's, with the client's own credentials, after the verified prefix
    expect(gets[1]?.authorization).toBe('Bearer client-token')
    expect(origin.ranges.get('/blobs/stall')).toEqual([`bytes=${PIECE}-`])
    const metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_back_to_source_total', { reason: 'ERR_PIECE_SOURCES_EXHAUSTED' })).toBe(1)
    expect(sample(metrics, 'shoal_dfget_download_bytes_total', { source: 'origin' })).toBe(data.byteLength - PIECE)
  })

  it('skips an unavailable supernode for its cool-down instead of paying its timeout on every download', async () => {
    origin = await startTestOrigin()
    swarm = await startSwarm(origin.url, { daemons: 0 })
    // nothing listens there: every control call fails, after the client's own retries
    const daemon = await swarm.addDaemon({ supernode: '/ip4/127.0.0.1/tcp/1', init: { supernodeCooldown: 600_000 } })

    const pull = async (name: string): Promise<number> => {
      const data = randomBytes(100_000)
      const { url, digest } = origin!.add(`/blobs/${name}`, data)
      const started = performance.now()
      await downloadToFile({ url, output: join(dir, name), digest, headers: {}, daemon: daemon.url, timeout: 60_000, signal })
      expect((await readFile(join(dir, name))).equals(data)).toBe(true)
      return performance.now() - started
    }

    const first = await pull('first')
    let metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_supernode_breaker_open')).toBe(1)
    expect(sample(metrics, 'shoal_dfget_back_to_source_total', { reason: 'ERR_SUPERNODE_UNAVAILABLE' })).toBe(1)

    const second = await pull('second')
    metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_back_to_source_total', { reason: 'supernode_cooldown' })).toBe(1)
    expect(sample(metrics, 'shoal_dfget_back_to_source_total', { reason: 'ERR_SUPERNODE_UNAVAILABLE' })).toBe(1)
    // the first paid the client's retries (at least 250 + 500 ms of pauses); the second none
    expect(first).toBeGreaterThan(750)
    expect(second).toBeLessThan(first)
  })

  it('retries a failing origin with back-off, and never a 4xx', async () => {
    origin = await startTestOrigin()
    swarm = await startSwarm(origin.url, { daemons: 0 })
    const daemon = await swarm.addDaemon({ supernode: null })
    const data = randomBytes(200_000)
    const { url, digest } = origin.add('/blobs/flaky', data, { failFirst: 2 })
    await downloadToFile({ url, output: join(dir, 'flaky'), digest, headers: {}, daemon: daemon.url, timeout: 60_000, signal })
    expect((await readFile(join(dir, 'flaky'))).equals(data)).toBe(true)
    expect(origin.gets.get('/blobs/flaky')).toBe(3)

    const gone = origin.add('/blobs/gone', randomBytes(1000), { status: 404 })
    await expect(downloadToFile({ url: gone.url, output: join(dir, 'gone'), digest: gone.digest, headers: {}, daemon: daemon.url, timeout: 60_000, signal }))
      .rejects.toThrow()
    // the daemon's authorization HEAD already heard the 404: no GET, and nothing retried
    expect(origin.gets.get('/blobs/gone') ?? 0).toBeLessThanOrEqual(1)

    // bounded: an origin that keeps failing is given up on after --origin-attempts (4) tries
    const down = origin.add('/blobs/down', randomBytes(1000), { failFirst: 100 })
    await expect(downloadToFile({ url: down.url, output: join(dir, 'down'), digest: down.digest, headers: {}, daemon: daemon.url, timeout: 60_000, signal }))
      .rejects.toThrow()
    expect(origin.gets.get('/blobs/down')).toBe(4)
    const metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_origin_retries_total')).toBe(2 + 3)
  })
})
