/**
 * Eight daemons pull one 64 MiB layer at once, asserted from metrics: the origin serves
 * it once, the supernode uploads at most 1.5× the layer, and every daemon got pieces
 * from other daemons. Then two IDCs of four daemons (--idc in each daemon's config
 * file): the bytes that cross between them stay at most 1.2× the layer.
 */
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest'
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.ts'
import { downloadThroughDaemon } from '../harness/daemon-download.ts'
import { sample, scrape } from '../harness/metrics.ts'
import { sha256, startTestOrigin, type TestOrigin } from '../harness/origin.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const MiB = 1024 * 1024
const SIZE = 64 * MiB
const PIECE = MiB
const DAEMONS = 8

describe('swarm at scale', () => {
  let dir: string
  let origin: TestOrigin
  let proxy: CountingProxy
  let supernode: SupernodeHandle | undefined
  let daemons: DaemonHandle[] = []

  beforeAll(async () => {
    dir = await makeTestDir('swarm-scale')
    origin = await startTestOrigin()
    // the layer arrives over a few seconds, as from a real registry: peers start on the
    // first pieces while the rest streams in
    proxy = await startCountingProxy(origin.url, { blobBytesPerSecond: 32 * MiB })
  })

  afterEach(async () => {
    await Promise.allSettled(daemons.map(async d => { await d.proc.stop() }))
    await supernode?.proc.stop()
    daemons = []
    supernode = undefined
  })

  afterAll(async () => {
    await proxy?.stop()
    await origin?.stop()
    await removeTestDir(dir)
  })

  /** Starts a supernode and a daemon per IDC label (null: none), all pulling one new layer at once. */
  const pullEverywhere = async (name: string, idcs: Array<string | null>): Promise<{ digest: string, daemonMetrics: Array<Map<string, number>>, supernodeMetrics: Map<string, number> }> => {
    supernode = await startSupernode({ dir: join(dir, `${name}-sn`), allowSource: [proxy.url], pieceSize: PIECE })
    const sn = supernode
    // each daemon joins the list as it starts, so afterEach stops it even when another fails to
    await Promise.all(idcs.map(async (idc, i) => {
      const host = `${name}-${i}`
      const extraArgs: string[] = []
      if (idc != null) {
        // the IDC comes from the daemon's config file, as an operator would set it
        const config = join(dir, `${host}.yaml`)
        await writeFile(config, `idc: ${idc}\nlocation: eu|${idc}|rack${i % 2}\n`)
        extraArgs.push('--config', config)
      }
      daemons.push(await startDaemon({ dir, name: host, registry: proxy.url, supernode: sn.url, extraArgs }))
    }))
    const data = randomBytes(SIZE)
    const digest = sha256(data)
    const path = `/v2/${name}/blobs/${digest}`
    origin.add(path, data)
    const results = await Promise.all(daemons.map(async d => downloadThroughDaemon(d, `${proxy.url}${path}`, digest, { timeoutMs: 180_000 })))
    expect(results).toEqual(daemons.map(() => digest))
    return {
      digest,
      daemonMetrics: await Promise.all(daemons.map(async d => scrape(`${d.url}/metrics`))),
      supernodeMetrics: await scrape(`${sn.url}/metrics`)
    }
  }

  it('8 daemons, one layer: the origin serves it once, the supernode at most 1.5x, every daemon gets pieces from peers', async () => {
    const { digest, daemonMetrics, supernodeMetrics } = await pullEverywhere('flat', Array(DAEMONS).fill(null))
    expect(proxy.blobGets.get(digest)).toBe(1)
    expect(sample(supernodeMetrics, 'shoal_supernode_source_bytes_total')).toBe(SIZE)
    const uploaded = sample(supernodeMetrics, 'shoal_supernode_upload_bytes_total')
    expect(uploaded).toBeGreaterThan(0)
    expect(uploaded).toBeLessThanOrEqual(1.5 * SIZE)
    for (const m of daemonMetrics) {
      expect(sample(m, 'shoal_dfget_download_bytes_total', { source: 'origin' })).toBe(0)
      expect(sample(m, 'shoal_dfget_download_bytes_total', { source: 'peer' })).toBeGreaterThan(0)
      // everything came through the swarm, counted once
      expect(sample(m, 'shoal_dfget_download_bytes_total', { source: 'peer' }) + sample(m, 'shoal_dfget_download_bytes_total', { source: 'supernode' })).toBe(SIZE)
    }
    const decisions = sample(supernodeMetrics, 'shoal_supernode_schedule_duration_seconds_count')
    expect(decisions).toBeGreaterThan(0)
    process.stderr.write(`[swarm-scale] 8 daemons: supernode uploaded ${(uploaded / SIZE).toFixed(2)}x the layer, ${decisions} decisions\n`)
  })

  it('two IDCs of 4 daemons: cross-IDC piece bytes stay at most 1.2x the layer', async () => {
    const idcs = Array.from({ length: DAEMONS }, (_, i) => (i % 2 === 0 ? 'idc-a' : 'idc-b'))
    const { digest, daemonMetrics } = await pullEverywhere('idc', idcs)
    expect(proxy.blobGets.get(digest)).toBe(1)
    const locality = (label: string): number => daemonMetrics.reduce((sum, m) => sum + sample(m, 'shoal_dfget_piece_bytes_total', { source: 'peer', locality: label }), 0)
    const cross = locality('cross_idc')
    const same = locality('same_idc')
    // every daemon declared its IDC, so no peer byte is of unknown locality
    expect(locality('unknown')).toBe(0)
    expect(same).toBeGreaterThan(0)
    expect(cross).toBeLessThanOrEqual(1.2 * SIZE)
    process.stderr.write(`[swarm-scale] two IDCs: cross-IDC peer bytes ${(cross / MiB).toFixed(1)} MiB, same-IDC ${(same / MiB).toFixed(1)} MiB, layer ${SIZE / MiB} MiB\n`)
  })
})
