/**
 * A real Prometheus scrapes the supernode and two daemons after a download went through
 * the swarm, and sees where the bytes came from.
 */
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startTestOrigin, type TestOrigin } from '../harness/origin.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { startPrometheus, type Prometheus } from '../harness/prometheus.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const skip = requireReal({ binaries: ['prometheus'] })

describe.skipIf(skip != null)(`Prometheus scrapes Shoal${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let origin: TestOrigin
  let supernode: SupernodeHandle
  const daemons: DaemonHandle[] = []
  let prometheus: Prometheus

  beforeAll(async () => {
    dir = await makeTestDir('prometheus')
    origin = await startTestOrigin()
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [origin.url], pieceSize: 256 * 1024 })
    for (const name of ['host-a', 'host-b']) {
      daemons.push(await startDaemon({ dir, name, registry: origin.url, supernode: supernode.url }))
    }
    const hostPort = (url: string): string => new URL(url).host
    prometheus = await startPrometheus(join(dir, 'prometheus'), {
      supernode: [hostPort(supernode.url)],
      dfget: daemons.map(d => hostPort(d.url))
    })
  })

  afterAll(async () => {
    await prometheus?.stop()
    await Promise.allSettled(daemons.map(async d => { await d.proc.stop() }))
    await supernode?.proc.stop()
    await origin?.stop()
    await removeTestDir(dir)
  })

  it('sees bytes by source on each daemon and the single origin fetch on the supernode', async () => {
    const data = randomBytes(2 * 1024 * 1024)
    const { url, digest } = origin.add('/files/release.tar', data)
    for (const d of daemons) {
      const res = await request(`${d.url}/api/v1/downloads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url, digest }) })
      expect(res.statusCode).toBe(200)
      expect(Buffer.from(await res.body.arrayBuffer()).equals(data)).toBe(true)
    }

    // scrapes run every second: wait (bounded) until Prometheus has the final numbers
    let bySource = new Map<string, number>()
    let sourceBytes = 0
    for (let i = 0; i < 60; i++) {
      const series = await prometheus.query('sum by (source) (shoal_dfget_download_bytes_total)')
      bySource = new Map(series.map(s => [s.metric.source ?? '', s.value]))
      sourceBytes = (await prometheus.query('shoal_supernode_source_bytes_total'))[0]?.value ?? 0
      if ((bySource.get('supernode') ?? 0) + (bySource.get('peer') ?? 0) >= 2 * data.byteLength && sourceBytes >= data.byteLength) {
        break
      }
      await new Promise(resolve => setTimeout(resolve, 500))
    }

    const up = await prometheus.query('up')
    expect(up.map(s => s.value)).toEqual([1, 1, 1])
    expect(bySource.get('origin')).toBe(0)
    expect((bySource.get('supernode') ?? 0) + (bySource.get('peer') ?? 0)).toBe(2 * data.byteLength)
    expect(bySource.get('peer')).toBeGreaterThan(0)
    expect(sourceBytes).toBe(data.byteLength)
  })
})
