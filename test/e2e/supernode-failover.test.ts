/**
 * Two supernodes, four daemons pulling the same layer at once. The supernode the task
 * hashes to is SIGKILLed mid-download: every daemon moves the download to the other
 * one, keeps the pieces it had, and finishes through the swarm; the registry serves
 * the layer at most twice (once to each supernode), never to a daemon.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { taskIdFor } from '../../packages/core/src/index.ts'
import { SupernodeRing } from '../../packages/dfget/src/download/supernode-ring.ts'
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.ts'
import { downloadThroughDaemon } from '../harness/daemon-download.ts'
import { daemonBytes, type BytesBySource } from '../harness/metrics.ts'
import { sha256, startTestOrigin, type TestOrigin } from '../harness/origin.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const MiB = 1024 * 1024
const PIECE = 256 * 1024
const SIZE = 12 * MiB
const total = (b: BytesBySource): number => b.origin + b.supernode + b.peer

const pull = downloadThroughDaemon

describe('several supernodes: one dies mid-download', () => {
  let dir: string
  let origin: TestOrigin
  let proxy: CountingProxy
  const supernodes: SupernodeHandle[] = []
  const daemons: DaemonHandle[] = []

  beforeAll(async () => {
    dir = await makeTestDir('supernode-failover')
    origin = await startTestOrigin()
    // blob bodies at 2 MiB/s: the downloads are mid-way when the supernode is killed
    proxy = await startCountingProxy(origin.url, { blobBytesPerSecond: 2 * MiB })
  })

  afterAll(async () => {
    await Promise.allSettled(daemons.map(async d => { await d.proc.stop() }))
    await Promise.allSettled(supernodes.map(async s => { await s.proc.stop() }))
    await proxy?.stop()
    await origin?.stop()
    await removeTestDir(dir)
  })

  it('moves every download to the other supernode, which finishes it through the swarm', async () => {
    for (const name of ['sn-1', 'sn-2']) {
      supernodes.push(await startSupernode({ dir: join(dir, name), allowSource: [proxy.url], pieceSize: PIECE }))
    }
    const addresses = supernodes.map(s => s.url)
    for (let i = 0; i < 4; i++) {
      daemons.push(await startDaemon({ dir, name: `host-${i}`, registry: proxy.url, supernode: addresses }))
    }

    const data = randomBytes(SIZE)
    const digest = sha256(data)
    const path = `/v2/app/blobs/${digest}`
    origin.add(path, data)
    const url = `${proxy.url}${path}`
    // the daemons' API keys a task by URL; every daemon orders the supernodes the same way
    const ring = new SupernodeRing(supernodes.map(s => ({ id: s.url, handle: s })))
    const [owner, next] = ring.order(taskIdFor({ url }))

    let done = 0
    const pulls = daemons.map(async d => pull(d, url, digest).finally(() => { done++ }))

    // bounded: 60 s for the first 2 MiB to reach the daemons
    const deadline = performance.now() + 60_000
    let arrived = 0
    while (arrived < 2 * MiB && performance.now() < deadline) {
      arrived = (await Promise.all(daemons.map(async d => total(await daemonBytes(d.url))))).reduce((a, b) => a + b, 0)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    expect(arrived).toBeGreaterThanOrEqual(2 * MiB)
    await owner!.handle.proc.kill('SIGKILL')
    // killed mid-download: nobody had the whole layer yet
    expect(done).toBe(0)

    expect(await Promise.all(pulls)).toEqual(daemons.map(() => digest))
    const bytes = await Promise.all(daemons.map(async d => daemonBytes(d.url)))
    // nobody went to the origin: the swarm delivered through the other supernode
    expect(bytes.map(b => b.origin)).toEqual([0, 0, 0, 0])
    // the registry served the layer to the two supernodes at most: egress at most 2x the layer
    expect(proxy.blobGets.get(digest) ?? 0).toBeLessThanOrEqual(2)
    expect(next!.handle.proc).toBeDefined()
  })
})
