import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { createMetricsRegistry, PieceStore, silentLogger, SupernodeUnavailableError, TaskFailedError } from '@shoal/core'
import { DfgetMetrics, DownloadManager, SupernodeBreaker, type Download } from '../src/index.ts'

function clock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000
  return { now: () => t, advance: (ms) => { t += ms } }
}

describe('SupernodeBreaker', () => {
  it('opens on failure, lets one probe through after the cool-down, and closes when the probe gets an answer', () => {
    const c = clock()
    const gauge: number[] = []
    const breaker = new SupernodeBreaker({ open: { set: (v: number) => { gauge.push(v) } }, now: c.now }, { cooldown: 1_000 })
    expect(breaker.tryAcquire()).toBe(true)
    breaker.failed()
    expect(gauge.at(-1)).toBe(1)
    expect(breaker.tryAcquire()).toBe(false)
    c.advance(999)
    expect(breaker.tryAcquire()).toBe(false)
    c.advance(1)
    // half-open: one probe, the others still skip the swarm
    expect(breaker.tryAcquire()).toBe(true)
    expect(breaker.tryAcquire()).toBe(false)
    breaker.failed()
    c.advance(1_000)
    expect(breaker.tryAcquire()).toBe(true)
    breaker.succeeded()
    expect(gauge.at(-1)).toBe(0)
    expect(breaker.tryAcquire()).toBe(true)
    expect(breaker.tryAcquire()).toBe(true)
  })

  it('lets the next download probe when the probe was aborted, and never opens with a cool-down of 0', () => {
    const c = clock()
    const breaker = new SupernodeBreaker({ open: { set: () => {} }, now: c.now }, { cooldown: 1_000 })
    breaker.failed()
    c.advance(1_000)
    expect(breaker.tryAcquire()).toBe(true)
    breaker.released()
    expect(breaker.tryAcquire()).toBe(true)

    const never = new SupernodeBreaker({ open: { set: () => {} }, now: c.now }, { cooldown: 0 })
    never.failed()
    expect(never.tryAcquire()).toBe(true)
  })

  it('in the download manager: skips the swarm while open, and an answer from the supernode (even a failed task) closes it', async () => {
    const store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-breaker-')) })
    await store.start()
    const c = clock()
    const metrics = new DfgetMetrics(createMetricsRegistry({ processMetrics: false }))
    const breaker = new SupernodeBreaker({ open: metrics.supernodeBreakerOpen, now: c.now }, { cooldown: 10_000 })
    const calls: string[] = []
    let swarmError: Error | null = new SupernodeUnavailableError('down')
    const fill = (d: Download): void => {
      d.setGeometry(10, 10)
      d.addPiece({ num: 0, offset: 0, length: 10, digest: `sha256:${'0'.repeat(64)}` })
    }
    const m = new DownloadManager({
      store,
      peerTask: { run: async (d: Download) => { calls.push('swarm'); if (swarmError != null) { throw swarmError } fill(d) } },
      origin: { run: async (d: Download) => { calls.push('origin'); fill(d) } },
      breaker,
      metrics,
      logger: silentLogger()
    })
    const pull = async (n: number): Promise<void> => {
      const d = await m.open({ url: `http://origin/${n}` })
      while (d.state === 'running') {
        await d.waitForChange(AbortSignal.timeout(5_000))
      }
    }
    await pull(1)
    await pull(2)
    expect(calls).toEqual(['swarm', 'origin', 'origin'])
    c.advance(10_000)
    // the probe: the supernode answers that the source failed (a 5xx): worth the origin, but the supernode is back
    swarmError = new TaskFailedError('source 502', { sourceStatus: 502 })
    await pull(3)
    swarmError = null
    await pull(4)
    expect(calls).toEqual(['swarm', 'origin', 'origin', 'swarm', 'origin', 'swarm'])
    await m.stop()
    await store.stop()
  })
})
