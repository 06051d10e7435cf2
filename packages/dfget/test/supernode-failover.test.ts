import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createMetricsRegistry, PieceStore, taskIdFor, silentLogger, SupernodeRequestError, SupernodeUnavailableError, TaskFailedError } from '@shoal/core'
import { DfgetMetrics, DownloadManager, openBreakersGauge, SupernodeBreaker, SupernodeRing, type Download, type SwarmRoute } from '../src/index.ts'

const fill = (d: Download): void => {
  d.setGeometry(10, 10)
  d.addPiece({ num: 0, offset: 0, length: 10, digest: `sha256:${'0'.repeat(64)}` })
}

async function finished (d: Download): Promise<void> {
  // bounded by the 5 s wait on each change
  while (d.state === 'running') {
    await d.waitForChange(AbortSignal.timeout(5_000))
  }
}

function sample (metrics: DfgetMetrics, name: 'supernodeBreakerOpen'): Promise<number> {
  return metrics[name].get().then(m => m.values[0]?.value ?? Number.NaN)
}

describe('DownloadManager with several supernodes', () => {
  let store: PieceStore
  let now = 0
  const calls: string[] = []
  /** Per supernode: what its swarm attempt throws (null: it delivers). */
  const outcome = new Map<string, Error | null>()
  let metrics: DfgetMetrics
  let m: DownloadManager
  let ring: SupernodeRing<SwarmRoute>
  const used = new Set<string>()

  beforeEach(async () => {
    store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-failover-')) })
    await store.start()
    calls.length = 0
    outcome.clear()
    used.clear()
    now = 0
    metrics = new DfgetMetrics(createMetricsRegistry({ processMetrics: false }))
    const gauge = openBreakersGauge(metrics.supernodeBreakerOpen)
    ring = new SupernodeRing(['sn-a', 'sn-b', 'sn-c'].map(id => ({
      id,
      peerTask: {
        run: async (d: Download) => {
          calls.push(id)
          const err = outcome.get(id)
          if (err != null) {
            throw err
          }
          fill(d)
        }
      },
      breaker: new SupernodeBreaker({ open: gauge(id), now: () => now }, { cooldown: 10_000 })
    })))
    m = new DownloadManager({
      store,
      supernodes: ring,
      origin: { run: async (d: Download) => { calls.push('origin'); fill(d) } },
      metrics,
      logger: silentLogger()
    })
  })

  afterEach(async () => {
    await m.stop()
    await store.stop()
  })

  const pull = async (url: string): Promise<Download> => {
    const d = await m.open({ url })
    await finished(d)
    return d
  }

  it('sends a task to its first supernode in rendezvous order', async () => {
    const d = await pull('http://origin/1')
    expect(d.state).toBe('success')
    expect(calls).toEqual([ring.owner(d.taskId).id])
    expect(d.via).toBe('swarm')
  })

  /** A URL not used before whose task hashes first to `id`, second to `second` when given. */
  const urlOwnedBy = (id: string, second?: string): string => {
    for (let i = 0; i < 1000; i++) {
      const url = `http://origin/${i}`
      const order = ring.order(taskIdFor({ url })).map(r => r.id)
      if (!used.has(url) && order[0] === id && (second == null || order[1] === second)) {
        used.add(url)
        return url
      }
    }
    throw new Error('no such URL in 1000')
  }

  it('moves a download to the next supernode when its own is unavailable, and to the origin only when all are', async () => {
    outcome.set('sn-a', new SupernodeUnavailableError('down'))
    const d1 = await pull(urlOwnedBy('sn-a', 'sn-c'))
    expect(calls).toEqual(['sn-a', 'sn-c'])
    expect(d1.state).toBe('success')
    expect(d1.via).toBe('swarm')
    expect(await sample(metrics, 'supernodeBreakerOpen')).toBe(1)

    calls.length = 0
    outcome.set('sn-b', new SupernodeUnavailableError('down'))
    outcome.set('sn-c', new SupernodeUnavailableError('down'))
    now = 20_000 // past sn-a's cool-down
    const d2 = await pull(urlOwnedBy('sn-b', 'sn-a'))
    expect(calls).toEqual(['sn-b', 'sn-a', 'sn-c', 'origin'])
    expect(d2.state).toBe('success')
    expect(d2.via).toBe('origin')
    expect(await sample(metrics, 'supernodeBreakerOpen')).toBe(3)
  })

  it('skips a supernode cooling down without trying it, and uses it again after the cool-down', async () => {
    outcome.set('sn-a', new SupernodeUnavailableError('down'))
    await pull(urlOwnedBy('sn-a', 'sn-b'))
    expect(calls).toEqual(['sn-a', 'sn-b'])

    calls.length = 0
    outcome.set('sn-a', null)
    const d = await pull(urlOwnedBy('sn-a', 'sn-c'))
    expect(calls).toEqual(['sn-c'])
    expect(d.via).toBe('swarm')

    calls.length = 0
    now = 10_000
    const again = await pull(urlOwnedBy('sn-a'))
    expect(again.via).toBe('swarm')
    expect(calls[0]).toBe('sn-a')
  })

  it('does not try another supernode when the source itself failed', async () => {
    outcome.set('sn-a', new TaskFailedError('gone', { sourceStatus: 404 }))
    outcome.set('sn-b', new TaskFailedError('gone', { sourceStatus: 404 }))
    outcome.set('sn-c', new TaskFailedError('gone', { sourceStatus: 404 }))
    const d = await pull('http://origin/missing')
    expect(d.state).toBe('failed')
    expect(calls).toEqual([ring.owner(d.taskId).id])
  })

  it('registers again with a supernode that no longer knows the task, instead of going to the origin', async () => {
    const d0 = await m.open({ url: 'http://origin/restarted' })
    const owner = ring.owner(d0.taskId)
    await finished(d0)
    calls.length = 0
    // the owner answers 404 once (it restarted or evicted the task), then serves it
    let forgotten = true
    const run = owner.peerTask.run
    owner.peerTask.run = async (d, r) => {
      if (forgotten) {
        forgotten = false
        calls.push(owner.id)
        throw new SupernodeRequestError(404, 'TASK_NOT_FOUND: no task')
      }
      return run(d, r)
    }
    await store.deleteTask(d0.taskId)
    const d = await pull('http://origin/restarted')
    expect(d.state).toBe('success')
    expect(calls).toEqual([owner.id, owner.id])
    expect(calls).not.toContain('origin')
  })

  it('closes a half-open breaker when the supernode answers, not when the probe download ends', async () => {
    const url = 'http://origin/probe'
    const owner = ring.owner(taskIdFor({ url }))
    outcome.set(owner.id, new SupernodeUnavailableError('down'))
    await pull(url)
    expect(await sample(metrics, 'supernodeBreakerOpen')).toBe(1)
    outcome.delete(owner.id)
    await store.deleteTask(taskIdFor({ url }))
    now += 20_000
    // the probe registers, then takes its time (a large layer)
    const release = Promise.withResolvers<void>()
    const run = owner.peerTask.run
    owner.peerTask.run = async (d, r) => {
      r.onRegistered?.()
      await release.promise
      return run(d, r)
    }
    const probe = m.open({ url })
    // bounded: the probe registers within a few turns of the event loop
    for (let i = 0; i < 100 && await sample(metrics, 'supernodeBreakerOpen') !== 0; i++) {
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    // closed while the probe is still downloading: other downloads may use it again
    expect(await sample(metrics, 'supernodeBreakerOpen')).toBe(0)
    release.resolve()
    await finished(await probe)
  })
})
