import { mkdtemp } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createMetricsRegistry, PieceStore, silentLogger, type SourceResponse } from '@shoal/core'
import { DfgetMetrics, Download, OriginFetch, type OriginFetchInit } from '../src/index.ts'

/** An origin that always answers `status`, recording when it was asked. */
function failingSource (status: number): { fetch: () => Promise<SourceResponse>, at: number[] } {
  const at: number[] = []
  return {
    at,
    fetch: async () => {
      at.push(performance.now())
      return { statusCode: status, headers: {}, body: Readable.from([]), url: 'http://origin/x', dump: async () => {} }
    }
  }
}

describe('OriginFetch back-off', () => {
  let store: PieceStore

  beforeEach(async () => {
    store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-origin-')) })
    await store.start()
  })

  afterEach(async () => {
    await store.stop()
  })

  const fetcher = (source: ReturnType<typeof failingSource>, init: OriginFetchInit, random: () => number): OriginFetch =>
    new OriginFetch({ store, source, metrics: new DfgetMetrics(createMetricsRegistry({ processMetrics: false })), logger: silentLogger(), random }, init)

  it('spaces tries with exponential caps and full jitter, bounded in count', async () => {
    const source = failingSource(503)
    const draws: number[] = []
    const origin = fetcher(source, { attempts: 4, retryDelay: 40, maxRetryDelay: 100 }, () => { draws.push(1); return 0.999 })
    await expect(origin.run(new Download({ taskId: 't1', url: 'http://origin/x' }), {}, AbortSignal.timeout(10_000)))
      .rejects.toMatchObject({ code: 'ERR_TASK_FAILED', sourceStatus: 503 })
    expect(source.at.length).toBe(4)
    expect(draws.length).toBe(3)
    const gaps = source.at.slice(1).map((t, i) => t - source.at[i]!)
    // caps 40, 80, then 100 (the max), each drawn at ~its top: the gaps grow, and none is below its draw
    expect(gaps[0]).toBeGreaterThanOrEqual(38)
    expect(gaps[1]).toBeGreaterThanOrEqual(78)
    expect(gaps[2]).toBeGreaterThanOrEqual(98)
  })

  it('stops retrying when the retry budget is spent, and at once on a 4xx', async () => {
    const source = failingSource(503)
    const origin = fetcher(source, { attempts: 10, retryDelay: 1_000, retryBudget: 500 }, () => 0.9)
    await expect(origin.run(new Download({ taskId: 't2', url: 'http://origin/x' }), {}, AbortSignal.timeout(10_000))).rejects.toMatchObject({ sourceStatus: 503 })
    expect(source.at.length).toBe(1)

    const notFound = failingSource(404)
    await expect(fetcher(notFound, { attempts: 10, retryDelay: 1 }, () => 0.5).run(new Download({ taskId: 't3', url: 'http://origin/x' }), {}, AbortSignal.timeout(10_000)))
      .rejects.toMatchObject({ sourceStatus: 404 })
    expect(notFound.at.length).toBe(1)
  })

  it('gives up waiting between tries when the download is aborted', async () => {
    const source = failingSource(502)
    const origin = fetcher(source, { attempts: 5, retryDelay: 60_000, maxRetryDelay: 60_000, retryBudget: 600_000 }, () => 0.99)
    const controller = new AbortController()
    setTimeout(() => { controller.abort(new Error('download over')) }, 100)
    const started = performance.now()
    await expect(origin.run(new Download({ taskId: 't4', url: 'http://origin/x' }), {}, controller.signal)).rejects.toThrow()
    expect(performance.now() - started).toBeLessThan(30_000)
    expect(source.at.length).toBe(1)
  })

  it('asks the origin for nothing when every byte is already here', async () => {
    const source = failingSource(416)
    const download = new Download({ taskId: 't9', url: 'http://origin/x' })
    download.setGeometry(10, 10)
    download.addPiece({ num: 0, offset: 0, length: 10, digest: `sha256:${'0'.repeat(64)}` })
    await fetcher(source, { attempts: 2, retryDelay: 1 }, () => 0.5).run(download, {}, AbortSignal.timeout(10_000))
    expect(source.at).toEqual([])
  })
})
