import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createMetricsRegistry, PieceStore, silentLogger, StoreWriteError, SupernodeUnavailableError, TaskFailedError } from '@shoal/core'
import { DfgetMetrics, DownloadManager, type Download } from '../src/index.ts'
import { downloadError } from '../src/mirror/send-download.ts'

const URL_A = 'http://origin/a'

/** Stands in for the swarm or the origin: fills the download with one piece, or fails. */
function fakeFetch (calls: string[], name: string, outcome: Error | null = null): { run: (d: Download) => Promise<void> } {
  return {
    run: async (download: Download) => {
      calls.push(name)
      await new Promise(resolve => setTimeout(resolve, 20))
      if (outcome != null) {
        throw outcome
      }
      download.setGeometry(10, 10)
      download.addPiece({ num: 0, offset: 0, length: 10, digest: `sha256:${'0'.repeat(64)}` })
    }
  }
}

describe('DownloadManager', () => {
  let store: PieceStore

  beforeEach(async () => {
    store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-dm-')) })
    await store.start()
  })

  afterEach(async () => {
    await store.stop()
  })

  const manager = (peerTask: { run: (d: Download) => Promise<void> } | undefined, origin: { run: (d: Download) => Promise<void> }): DownloadManager =>
    new DownloadManager({
      store,
      ...(peerTask != null ? { peerTask } : {}),
      origin,
      metrics: new DfgetMetrics(createMetricsRegistry({ processMetrics: false })),
      logger: silentLogger()
    })

  it('reports the bytes expected and verified of the downloads in progress (the progress gauges)', async () => {
    let release = (): void => {}
    const held = new Promise<void>(resolve => { release = resolve })
    const swarm = {
      run: async (download: Download) => {
        download.setGeometry(30, 10)
        download.addPiece({ num: 0, offset: 0, length: 10, digest: `sha256:${'0'.repeat(64)}` })
        await held
        download.addPiece({ num: 1, offset: 10, length: 10, digest: `sha256:${'1'.repeat(64)}` })
        download.addPiece({ num: 2, offset: 20, length: 10, digest: `sha256:${'2'.repeat(64)}` })
      }
    }
    const registry = createMetricsRegistry({ processMetrics: false })
    const metrics = new DfgetMetrics(registry)
    const m = new DownloadManager({ store, peerTask: swarm, origin: fakeFetch([], 'origin'), metrics, logger: silentLogger() })
    metrics.observe({ activeProgress: () => m.activeProgress() })
    const d = await m.open({ url: URL_A })
    for (let i = 0; i < 100 && d.contiguous < 10; i++) {
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    expect(m.activeProgress()).toEqual({ expected: 30, completed: 10 })
    const text = await registry.metrics()
    expect(text).toContain('shoal_dfget_active_download_expected_bytes 30\n')
    expect(text).toContain('shoal_dfget_active_download_completed_bytes 10\n')
    release()
    for (let i = 0; i < 100 && d.state !== 'success'; i++) {
      await d.waitForChange(AbortSignal.timeout(1_000))
    }
    expect(d.state).toBe('success')
    await m.stop()
    expect(m.activeProgress()).toEqual({ expected: 0, completed: 0 })
  })

  it('starts one download however many clients ask in the same instant', async () => {
    const calls: string[] = []
    const m = manager(fakeFetch(calls, 'swarm'), fakeFetch(calls, 'origin'))
    const downloads = await Promise.all(Array.from({ length: 5 }, async () => m.open({ url: URL_A })))
    expect(new Set(downloads).size).toBe(1)
    expect(calls).toEqual(['swarm'])
    await m.stop()
  })

  it('falls back to the origin when the swarm is unavailable, not when the source said 404', async () => {
    const calls: string[] = []
    const m = manager(fakeFetch(calls, 'swarm', new SupernodeUnavailableError('down')), fakeFetch(calls, 'origin'))
    const d = await m.open({ url: URL_A })
    await d.waitForChange(AbortSignal.timeout(1_000))
    await m.stop()
    expect(calls).toEqual(['swarm', 'origin'])
    expect(d.via).toBe('origin')

    const calls404: string[] = []
    const m404 = manager(fakeFetch(calls404, 'swarm', new TaskFailedError('gone', { sourceStatus: 404 })), fakeFetch(calls404, 'origin'))
    const failed = await m404.open({ url: 'http://origin/b' })
    expect(failed.state).toBe('failed')
    expect(calls404).toEqual(['swarm'])
    await m404.stop()
  })

  it('on a full disk makes room and tries the origin; a disk that stays full is a 507, not the swarm\'s fault', async () => {
    const calls: string[] = []
    const forced: unknown[] = []
    const evict = store.evict.bind(store)
    store.evict = async (options) => { forced.push(options?.force); return await evict(options) }
    const m = manager(fakeFetch(calls, 'swarm', new StoreWriteError('no space left on device')), fakeFetch(calls, 'origin'))
    const d = await m.open({ url: URL_A })
    await d.waitForChange(AbortSignal.timeout(1_000))
    await m.stop()
    expect(calls).toEqual(['swarm', 'origin'])
    expect(forced).toEqual([true])

    const full = manager(fakeFetch([], 'swarm', new StoreWriteError('no space')), fakeFetch([], 'origin', new StoreWriteError('no space')))
    const failed = await full.open({ url: 'http://origin/full' })
    await failed.waitForChange(AbortSignal.timeout(1_000))
    await full.stop()
    expect(failed.state).toBe('failed')
    const answer = downloadError(failed.error)
    expect(answer.status).toBe(507)
    expect(answer.message).toMatch(/cannot store/)
  })

  it('goes to the origin directly when there is no supernode', async () => {
    const calls: string[] = []
    const m = manager(undefined, fakeFetch(calls, 'origin'))
    await m.open({ url: URL_A })
    await m.stop()
    expect(calls).toEqual(['origin'])
  })
})
