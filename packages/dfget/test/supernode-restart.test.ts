import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { generateClusterKey, parseClusterKey, silentLogger, taskIdFor } from '@shoal/core'
// the supernode is not a dependency of the daemon; tests bring its source in directly
import { Supernode } from '../../supernode/src/index.ts'
import { Daemon, downloadToFile } from '../src/index.ts'
import { sample, scrape } from '../../../test/harness/metrics.ts'
import { startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'

const PIECE = 64 * 1024

/** Polls `check` every 50 ms until it holds or `ms` passed. */
async function until (check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  // bounded by the deadline
  while (!check()) {
    if (Date.now() > deadline) {
      return false
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return true
}

describe('a supernode restart knows the swarm again', () => {
  const stoppers: Array<() => Promise<void>> = []
  let origin: TestOrigin | undefined

  afterEach(async () => {
    for (const stop of stoppers.reverse()) {
      await stop().catch(() => {})
    }
    stoppers.length = 0
    await origin?.stop()
  })

  it('learns from the next heartbeat that a daemon holds a task, and sends other daemons there for its pieces', async () => {
    const root = await mkdtemp(join(tmpdir(), 'shoal-sn-restart-'))
    const clusterKey = parseClusterKey(generateClusterKey())
    origin = await startTestOrigin()
    const data = randomBytes(12 * PIECE)
    const { url, digest } = origin.add('/blobs/layer', data)
    const taskId = taskIdFor({ url })

    const startSupernode = async (port: number): Promise<Supernode> => {
      const sn = new Supernode({ logger: silentLogger() }, {
        listen: { host: '127.0.0.1', port: 0 },
        p2pListen: [`/ip4/127.0.0.1/tcp/${port}`],
        dataDir: join(root, 'supernode'),
        clusterKey,
        allowSource: [origin!.url],
        pieceSize: PIECE
      })
      await sn.start()
      return sn
    }
    let sn = await startSupernode(0)
    const port = Number(sn.self().addrs.map(a => /\/tcp\/(\d+)/.exec(a)?.[1]).find(p => p != null))
    let current = sn
    stoppers.push(async () => { await current.stop() })

    const startDaemon = async (name: string): Promise<Daemon> => {
      const d = new Daemon({ logger: silentLogger() }, {
        listen: { host: '127.0.0.1', port: 0 },
        registry: origin!.url,
        supernode: `/ip4/127.0.0.1/tcp/${port}`,
        p2pListen: ['/ip4/127.0.0.1/tcp/0'],
        dataDir: join(root, name),
        clusterKey,
        hostname: name,
        announceInterval: 200
      })
      await d.start()
      stoppers.push(async () => { await d.stop() })
      return d
    }
    const a = await startDaemon('a')
    await downloadToFile({ url, output: join(root, 'a.bin'), digest, headers: {}, daemon: a.url, timeout: 30_000, signal: AbortSignal.timeout(30_000) })
    expect(await until(() => sn.tasks.get(taskId).state === 'success', 10_000)).toBe(true)

    // a new supernode on the same data dir and address: it restores the task, but not who holds it
    await sn.stop()
    sn = await startSupernode(port)
    current = sn
    const restored = sn.tasks.get(taskId)
    expect(restored.state).toBe('success')
    expect(restored.heldBy(a.self().peerId)).toBe(0)

    // a heartbeat (200 ms here) later, a's announce named the task
    expect(await until(() => restored.heldBy(a.self().peerId) === restored.pieceCount, 10_000)).toBe(true)

    const b = await startDaemon('b')
    await downloadToFile({ url, output: join(root, 'b.bin'), digest, headers: {}, daemon: b.url, timeout: 30_000, signal: AbortSignal.timeout(30_000) })
    expect((await readFile(join(root, 'b.bin'))).equals(data)).toBe(true)
    const metrics = await scrape(`${b.url}/metrics`)
    // every piece from a, none from the supernode
    expect(sample(metrics, 'shoal_dfget_download_bytes_total', { source: 'peer' })).toBe(data.byteLength)
    expect(sample(metrics, 'shoal_dfget_download_bytes_total', { source: 'supernode' })).toBe(0)
  }, 60_000)
})
