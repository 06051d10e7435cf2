/**
 * A daemon SIGKILLed mid-download and started again on the same data dir resumes from
 * the pieces it had verified: at most one piece is fetched again, whether the rest
 * comes through the swarm or straight from the origin.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.ts'
import { downloadThroughDaemon } from '../harness/daemon-download.ts'
import { daemonBytes, type BytesBySource } from '../harness/metrics.ts'
import { sha256, startTestOrigin, type TestOrigin } from '../harness/origin.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const MiB = 1024 * 1024
const total = (b: BytesBySource): number => b.origin + b.supernode + b.peer

const pull = downloadThroughDaemon

/** Polls the daemon's metrics until `enough` holds; bounded. */
async function waitForBytes (daemon: DaemonHandle, enough: (b: BytesBySource) => boolean): Promise<BytesBySource> {
  const deadline = performance.now() + 60_000
  while (performance.now() < deadline) {
    const bytes = await daemonBytes(daemon.url)
    if (enough(bytes)) {
      return bytes
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error('the download did not make progress in 60 s')
}

describe('resume after a daemon restart', () => {
  let dir: string
  let origin: TestOrigin
  let proxy: CountingProxy
  let supernode: SupernodeHandle | undefined
  const daemons: DaemonHandle[] = []

  beforeAll(async () => {
    dir = await makeTestDir('resume')
    origin = await startTestOrigin()
    // blob bodies at 2 MiB/s: the download is mid-way when the daemon is killed
    proxy = await startCountingProxy(origin.url, { blobBytesPerSecond: 2 * MiB })
  })

  afterAll(async () => {
    await Promise.allSettled(daemons.map(async d => { await d.proc.stop() }))
    await supernode?.proc.stop()
    await proxy?.stop()
    await origin?.stop()
    await removeTestDir(dir)
  })

  /** Starts the download, kills the daemon once `killAt` bytes arrived, restarts it, pulls again. */
  async function killAndResume (name: string, supernodeUrl: string | null, size: number, killAt: number): Promise<{ before: BytesBySource, after: BytesBySource, path: string }> {
    const data = randomBytes(size)
    const digest = sha256(data)
    const path = `/v2/app/blobs/${digest}`
    origin.add(path, data)
    const url = `${proxy.url}${path}`
    const start = async (): Promise<DaemonHandle> => {
      const d = await startDaemon({ dir, name, registry: proxy.url, supernode: supernodeUrl })
      daemons.push(d)
      return d
    }

    const first = await start()
    const cut = pull(first, url, digest).catch((err: unknown) => err)
    const before = await waitForBytes(first, b => total(b) >= killAt)
    await first.proc.kill('SIGKILL')
    expect(await cut).toBeInstanceOf(Error)

    const second = await start()
    expect(second.peerId).toBe(first.peerId)
    expect(await pull(second, url, digest)).toBe(digest)
    return { before, after: await daemonBytes(second.url), path }
  }

  it('through the swarm: only the pieces it lacked, at most one of them again', async () => {
    const PIECE = 256 * 1024
    const SIZE = 12 * MiB
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [proxy.url], pieceSize: PIECE })
    const { before, after } = await killAndResume('swarm-host', supernode.url, SIZE, 4 * MiB)
    // swarm bytes are counted per verified piece, so everything counted before the kill was on disk
    expect(total(before)).toBeGreaterThanOrEqual(4 * MiB)
    expect(total(after)).toBeLessThanOrEqual(SIZE - total(before) + PIECE)
    expect(after.origin).toBe(0)
  })

  it('straight from the origin: a Range request after the verified pieces', async () => {
    // a daemon without a supernode cuts the origin's content into 4 MiB pieces
    const PIECE = 4 * MiB
    const SIZE = 20 * MiB
    const { before, after, path } = await killAndResume('origin-host', null, SIZE, 2 * PIECE + MiB)
    // origin bytes are counted as they arrive: what was past the last recorded piece (at
    // most one piece) is fetched again
    expect(total(before)).toBeGreaterThanOrEqual(2 * PIECE + MiB)
    expect(after.origin).toBeLessThanOrEqual(SIZE - total(before) + PIECE)
    // one Range request, starting at a piece boundary at or past the second piece
    const ranges = origin.ranges.get(path) ?? []
    expect(ranges).toHaveLength(1)
    const resumeAt = Number(/^bytes=(\d+)-$/.exec(ranges[0] ?? '')?.[1])
    expect(resumeAt % PIECE).toBe(0)
    expect(resumeAt).toBeGreaterThanOrEqual(2 * PIECE)
  })
})
