import { describe, expect, it } from 'vitest'
import { nothingLeft, PeerRegistry, ScheduleService, Scheduler, Task } from '../src/index.ts'
import type { PeerInfo } from '@shoal/core'

const SELF = { peerId: 'SuperNode', addrs: ['/ip4/127.0.0.1/tcp/8003/p2p/SuperNode'] }
const peer = (id: string): PeerInfo => ({ peerId: id, addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${id}`], hostname: id })

function setup (ids: string[], init = {}): { service: ScheduleService, scheduler: Scheduler, peers: PeerRegistry, decisions: number[] } {
  const peers = new PeerRegistry()
  for (const id of ids) {
    peers.upsert(peer(id))
  }
  const scheduler = new Scheduler({ peers, self: () => SELF }, init)
  const decisions: number[] = []
  const service = new ScheduleService({ peers, scheduler, selfId: () => SELF.peerId, onDecision: (s) => { decisions.push(s) } })
  return { service, scheduler, peers, decisions }
}

function task (service: ScheduleService, n: number, cut = n): Task {
  const t = new Task({ id: 'c'.repeat(64), url: 'http://origin/blob' })
  service.attach(t)
  t.start(n * 10, 10)
  for (let num = 0; num < cut; num++) {
    t.addPiece({ num, offset: num * 10, length: 10, digest: `sha256:${String(num).padStart(64, '0')}` })
  }
  return t
}

const tick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

describe('ScheduleService', () => {
  it('holds a long poll until the piece it lacks arrives, then answers at once', async () => {
    const { service } = setup(['A'])
    const t = task(service, 2, 0)
    let answered: number[] | undefined
    const started = Date.now()
    const poll = service.next(t, 'A', { running: [], limit: 4, waitMs: 10_000 }).then(a => { answered = a.map(x => x.num) })
    await tick()
    expect(answered).toBeUndefined()
    expect(service.waiters.count(t.id)).toBe(1)
    t.addPiece({ num: 0, offset: 0, length: 10, digest: `sha256:${'0'.repeat(64)}` })
    await poll
    expect(answered).toEqual([0])
    expect(Date.now() - started).toBeLessThan(5_000)
    expect(service.waiters.count()).toBe(0)
  })

  it('wakes only the waiters a report can help', async () => {
    // both pieces are being seeded (to A and B), every supernode slot taken: the others wait
    const { service, scheduler, peers, decisions } = setup(['A', 'B', 'C', 'D'], { maxSeeding: 2 })
    const t = task(service, 2)
    expect(scheduler.schedule(t, 'A', new Set(), 1).map(a => a.num)).toEqual([0])
    expect(scheduler.schedule(t, 'B', new Set(), 1).map(a => a.num)).toEqual([1])
    // E holds piece 0 (it cannot serve: no address) and is fetching piece 1: no report helps it
    peers.upsert({ peerId: 'E', addrs: [], hostname: 'E' })
    t.addHolder(0, 'E')
    const woke: string[] = []
    const poll = (id: string, running: number[]): Promise<void> =>
      service.next(t, id, { running, limit: 1, waitMs: 1_500 }).then((a) => { woke.push(`${id}:${a.map(x => x.num).join(',')}`) })
    const polls = [poll('C', []), poll('D', []), poll('E', [1])]
    await tick()
    expect(service.waiters.count(t.id)).toBe(3)
    const decided = decisions.length
    // A got piece 0: as its new holder A wakes those lacking piece 0 (C and D), and its
    // freed supernode slot wakes nobody else: E lacks nothing it is not fetching
    service.report(t, 'A', [{ num: 0, ok: true, source: 'SuperNode' }])
    await tick()
    await tick()
    expect(woke.sort()).toEqual(['C:0', 'D:0'])
    expect(service.waiters.count(t.id)).toBe(1)
    // two scheduling passes (C's and D's), none spent on E
    expect(decisions.length - decided).toBe(2)
    await Promise.all(polls)
    expect(woke).toContain('E:')
  })

  it('answers nothing at once when the peer holds or fetches every piece of a finished task', async () => {
    const { service, decisions } = setup(['A'])
    const t = task(service, 2)
    t.succeed(20)
    t.addHolder(0, 'A')
    expect(nothingLeft(t, 'A', new Set([1]))).toBe(true)
    expect(nothingLeft(t, 'A', new Set())).toBe(false)
    const started = Date.now()
    expect(await service.next(t, 'A', { running: [1], limit: 4, waitMs: 5_000 })).toEqual([])
    expect(Date.now() - started).toBeLessThan(1_000)
    expect(decisions.length).toBeGreaterThan(0)
  })

  it('blocks a parent that sent bad bytes, records piece times, and frees the slot of a settled transfer', () => {
    const { service, scheduler } = setup(['Bad', 'Good', 'R'])
    const t = task(service, 1)
    t.addHolder(0, 'Bad')
    t.addHolder(0, 'Good')
    // R was sent to both; it names Bad
    expect(scheduler.schedule(t, 'R', new Set(), 1)[0]?.sources.map(s => s.peerId).sort()).toEqual(['Bad', 'Good', 'SuperNode'])
    service.report(t, 'R', [{ num: 0, ok: false, source: 'Bad', code: 'ERR_PIECE_DIGEST_MISMATCH' }])
    expect(scheduler.stats.isBlocked(t.id, 'Bad')).toBe(true)
    expect(t.holds(0, 'Bad')).toBe(false)
    expect(scheduler.schedule(t, 'X', new Set(), 1)[0]?.sources.map(s => s.peerId)).toEqual(['Good', 'SuperNode'])
    // the piece is 10 bytes: 10 ms for it is far slower than the 50 ms/MiB assumed, so the
    // sample is clamped to 10× that
    service.report(t, 'X', [{ num: 0, ok: true, source: 'Good', bytes: 1024 * 1024, ms: 10 }])
    expect(scheduler.stats.pieceTime('Good')).toBe(500)
    const [a] = scheduler.schedule(t, 'R', new Set(), 1)
    expect(a?.sources.map(s => s.peerId)).toEqual(['Good', 'SuperNode'])
    expect(scheduler.loadOf('Good')).toBe(1)
    service.report(t, 'R', [{ num: 0, ok: true, source: 'Good', bytes: 10, ms: 1 }])
    expect(scheduler.loadOf('Good')).toBe(0)
  })

  it('wakes every waiter when the task fails', async () => {
    const { service } = setup(['A', 'B'])
    const t = task(service, 2, 0)
    const polls = ['A', 'B'].map(async id => service.next(t, id, { running: [], limit: 1, waitMs: 10_000 }))
    await tick()
    const started = Date.now()
    t.fail({ code: 'ERR_X', message: 'x' })
    expect(await Promise.all(polls)).toEqual([[], []])
    expect(Date.now() - started).toBeLessThan(1_000)
  })
})
