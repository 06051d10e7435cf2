import { describe, expect, it } from 'vitest'
import { nothingLeft, PeerRegistry, PeerStats, ScheduleService, Scheduler, Task, Waiters } from '../src/index.ts'
import type { PeerInfo } from '@shoal/core'

// The review's findings on trust, fairness and leaks: what a member's report may do,
// how far one sample moves speed, which holders a decision can reach, how long a
// requester waits for a busy parent, and when handed-out transfers end.

const SELF = { peerId: 'SuperNode', addrs: ['/ip4/127.0.0.1/tcp/8003/p2p/SuperNode'] }
const peer = (id: string, place: { idc?: string } = {}): PeerInfo => ({ peerId: id, addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${id}`], hostname: id, ...place })

function setup (infos: PeerInfo[], init = {}): { service: ScheduleService, scheduler: Scheduler, peers: PeerRegistry } {
  const peers = new PeerRegistry()
  for (const info of infos) {
    peers.upsert(info)
  }
  const scheduler = new Scheduler({ peers, self: () => SELF }, init)
  const service = new ScheduleService({ peers, scheduler, selfId: () => SELF.peerId })
  return { service, scheduler, peers }
}

function task (service: ScheduleService, n: number, id = 'c'.repeat(64)): Task {
  const t = new Task({ id, url: 'http://origin/blob' })
  service.attach(t)
  t.start(n * 10, 10)
  for (let num = 0; num < n; num++) {
    t.addPiece({ num, offset: num * 10, length: 10, digest: `sha256:${String(num).padStart(64, '0')}` })
  }
  return t
}

const sourcesOf = (scheduler: Scheduler, t: Task, requester: string, running: number[] = []): string[] =>
  scheduler.schedule(t, requester, new Set(running), 1)[0]?.sources.map(s => s.peerId) ?? []

describe('reports are believed only for what was handed out', () => {
  it('ignores blame, BUSY and failures about a source the reporter was not sent to', () => {
    const { service, scheduler, peers } = setup([peer('A'), peer('R')])
    const t = task(service, 1)
    t.addHolder(0, 'A')
    // nothing was handed to R: its word about A counts for nothing
    service.report(t, 'R', [{ num: 0, ok: false, source: 'A', code: 'ERR_PIECE_DIGEST_MISMATCH' }])
    service.report(t, 'R', [{ num: 0, ok: false, source: 'A', code: 'ERR_PEER_BUSY' }])
    service.report(t, 'R', [{ num: 0, ok: false, source: 'A', code: 'ERR_PIECE_NOT_FOUND' }])
    service.report(t, 'R', Array.from({ length: 10 }, () => ({ num: 0, ok: false, source: 'A' })))
    expect(scheduler.stats.isBlocked(t.id, 'A')).toBe(false)
    expect(peers.isUsable('A')).toBe(true)
    expect(t.holds(0, 'A')).toBe(true)
    // handed out with A as a source, the same report counts
    expect(sourcesOf(scheduler, t, 'R')).toEqual(['A', 'SuperNode'])
    service.report(t, 'R', [{ num: 0, ok: false, source: 'A', code: 'ERR_PIECE_DIGEST_MISMATCH' }])
    expect(scheduler.stats.isBlocked(t.id, 'A')).toBe(true)
    expect(t.holds(0, 'A')).toBe(false)
  })

  it('ignores a result naming a source that was not among those handed out, or that the registry does not know', () => {
    const { service, scheduler, peers } = setup([peer('Good'), peer('Victim'), peer('R')])
    const t = task(service, 2)
    t.addHolder(0, 'Good')
    t.addHolder(1, 'Victim')
    expect(sourcesOf(scheduler, t, 'R', [1])).toEqual(['Good', 'SuperNode'])
    service.report(t, 'R', [{ num: 0, ok: false, source: 'Victim', code: 'ERR_PIECE_DIGEST_MISMATCH' }])
    expect(scheduler.stats.isBlocked(t.id, 'Victim')).toBe(false)
    // a known source that left before the report: nothing recorded of it
    expect(sourcesOf(scheduler, t, 'R', [1])).toEqual(['Good', 'SuperNode'])
    peers.remove('Good')
    const before = scheduler.stats.size
    service.report(t, 'R', [{ num: 0, ok: true, source: 'Good', ms: 5 }])
    expect(scheduler.stats.size).toBe(before)
    // its own holding stays accepted: the reporter speaks for itself
    expect(t.holds(0, 'R')).toBe(true)
    service.report(t, 'R', [{ num: 1, ok: true, source: 'R' }])
    expect(t.holds(1, 'R')).toBe(true)
  })

  it('believes each source of one transfer once, as a daemon tries them in turn', () => {
    const { service, scheduler, peers } = setup([peer('A'), peer('B'), peer('R')])
    const t = task(service, 1)
    t.addHolder(0, 'A')
    t.addHolder(0, 'B')
    expect(sourcesOf(scheduler, t, 'R').sort()).toEqual(['A', 'B', 'SuperNode'])
    // BUSY from the first it tried, then the piece from the second
    service.report(t, 'R', [
      { num: 0, ok: false, source: 'A', code: 'ERR_PEER_BUSY' },
      { num: 0, ok: true, source: 'B', ms: 1 },
      // said again: the transfer's word about B was already taken
      { num: 0, ok: false, source: 'B', code: 'ERR_PIECE_NOT_FOUND' }
    ])
    expect(peers.isBusy('A')).toBe(true)
    // measured (10 bytes in 1 ms is slow: clamped to 10× the 50 ms/MiB assumed)
    expect(scheduler.stats.pieceTime('B')).toBe(500)
    expect(t.holds(0, 'B')).toBe(true)
    expect(t.holds(0, 'R')).toBe(true)
  })

  it('blocks a peer for every task only when two distinct reporters saw it send bad bytes', () => {
    const { service, scheduler } = setup([peer('Bad'), peer('R1'), peer('R2')])
    const tasks = ['1', '2', '3', '4'].map(c => task(service, 1, c.repeat(64)))
    for (const t of tasks) {
      t.addHolder(0, 'Bad')
    }
    const offence = (t: Task, reporter: string): void => {
      expect(sourcesOf(scheduler, t, reporter)[0]).toBe('Bad')
      service.report(t, reporter, [{ num: 0, ok: false, source: 'Bad', code: 'ERR_PIECE_DIGEST_MISMATCH' }])
    }
    offence(tasks[0]!, 'R1')
    offence(tasks[1]!, 'R1')
    // one reporter, twice: blocked for those two tasks only
    expect(scheduler.stats.isBlocked(tasks[3]!.id, 'Bad')).toBe(false)
    offence(tasks[2]!, 'R2')
    expect(scheduler.stats.isBlocked(tasks[3]!.id, 'Bad')).toBe(true)
  })

  it('keeps PeerStats bounded', () => {
    const stats = new PeerStats({ maxPeers: 2 })
    for (const id of ['a', 'b', 'c', 'd']) {
      stats.recordTime(id, 1024 * 1024, 10)
      stats.recordBadBytes('t', id, 'R')
    }
    expect(stats.size).toBe(4)
  })
})

describe('speed samples', () => {
  it('uses the piece length, not reported bytes, and one sample cannot move the overall average far', () => {
    const { service, scheduler } = setup([peer('A'), peer('R')])
    const t = task(service, 1)
    t.addHolder(0, 'A')
    expect(sourcesOf(scheduler, t, 'R')[0]).toBe('A')
    // claims a huge piece in no time: the 10-byte piece in 1 ms is slow, not fast
    service.report(t, 'R', [{ num: 0, ok: true, source: 'A', bytes: 1e15, ms: 1 }])
    expect(scheduler.stats.pieceTime('A')).toBe(500)
    expect(scheduler.stats.pieceTime('Unmeasured')).toBeLessThan(100)
    const stats = new PeerStats()
    stats.recordTime('Liar', 1024 * 1024, 0)
    expect(stats.pieceTime('Liar')).toBe(5)
    for (let i = 0; i < 3; i++) {
      stats.recordTime('Liar', 1024 * 1024, 1e12)
    }
    expect(stats.pieceTime('Other')).toBeLessThan(100)
  })
})

describe('holder choice', () => {
  it('reaches idle holders behind hundreds of busy ones', () => {
    const ids = Array.from({ length: 1_000 }, (_, i) => `H${i}`)
    const { service, scheduler, peers } = setup([...ids.map(id => peer(id)), peer('R')])
    const t = task(service, 1)
    for (const id of ids) {
      t.addHolder(0, id)
    }
    for (const id of ids.slice(0, 256)) {
      peers.recordBusy(id)
    }
    let fromPeers = 0
    for (let i = 0; i < 20; i++) {
      const [first] = sourcesOf(scheduler, t, 'R')
      if (first != null && first !== 'SuperNode' && Number(first.slice(1)) >= 256) {
        fromPeers++
      }
    }
    expect(fromPeers).toBeGreaterThanOrEqual(15)
  })

  it('waits for a busy parent in its own IDC only for a while, then takes a far one', async () => {
    const { service, scheduler } = setup([peer('Near', { idc: 'a' }), peer('Far', { idc: 'b' }), peer('R', { idc: 'a' }), peer('S', { idc: 'a' })], { maxPeerUploads: 1, nearWait: 100 })
    const t = task(service, 1)
    t.addHolder(0, 'Near')
    t.addHolder(0, 'Far')
    // S takes Near's only slot
    expect(sourcesOf(scheduler, t, 'S')[0]).toBe('Near')
    expect(sourcesOf(scheduler, t, 'R')).toEqual([])
    await new Promise(resolve => setTimeout(resolve, 150))
    expect(sourcesOf(scheduler, t, 'R')).toEqual(['Far', 'SuperNode'])
  })
})

describe('wake-ups', () => {
  it('a new holder wakes as many waiters as the configured upload cap', async () => {
    const peers = new PeerRegistry()
    for (const id of ['A', 'B', 'C', 'D', 'H', 'S']) {
      peers.upsert(peer(id))
    }
    const scheduler = new Scheduler({ peers, self: () => SELF }, { maxPeerUploads: 2 })
    let decisions = 0
    const service = new ScheduleService({ peers, scheduler, selfId: () => SELF.peerId, onDecision: () => { decisions++ } })
    const t = task(service, 1)
    // piece 0 is being seeded to S: the others wait for a peer to hold it
    expect(sourcesOf(scheduler, t, 'S')).toEqual(['SuperNode'])
    const polls = ['A', 'B', 'C', 'D'].map(async id => service.next(t, id, { running: [], limit: 1, waitMs: 2_000 }))
    await new Promise(resolve => setImmediate(resolve))
    expect(service.waiters.count(t.id)).toBe(4)
    const before = decisions
    t.addHolder(0, 'H')
    await new Promise(resolve => setImmediate(resolve))
    // H may be sent 2 at once: 2 woke and decided, not 8
    expect(decisions - before).toBe(2)
    expect(service.waiters.count(t.id)).toBe(2)
    t.fail({ code: 'ERR_X', message: 'x' })
    await Promise.all(polls)
  })
})

describe('a freed slot', () => {
  it('takes its candidate pieces once per wake, and makes a bounded number of checks', async () => {
    const waiters = new Waiters()
    const controller = new AbortController()
    let checks = 0
    const polls = Array.from({ length: 200 }, async (_, i) => waiters.wait('t', `W${i}`, () => { checks++; return false }, 5_000, controller.signal))
    let walks = 0
    const pieces = function * (): Generator<number> {
      walks++
      for (let num = 0; num < 100_000; num++) {
        yield num
      }
    }
    expect(waiters.wakeWantingAny('t', pieces, 1)).toBe(0)
    expect(walks).toBe(1)
    expect(checks).toBeLessThanOrEqual(16_384)
    expect(checks).toBeGreaterThan(0)
    controller.abort()
    await Promise.all(polls)
  })
})

describe('nothingLeft', () => {
  it('counts only real pieces the peer lacks among those it says it fetches', () => {
    const { service } = setup([peer('A')])
    const t = task(service, 2)
    t.succeed(20)
    expect(nothingLeft(t, 'A', new Set([5, 7]))).toBe(false)
    t.addHolder(0, 'A')
    expect(nothingLeft(t, 'A', new Set([0, 9]))).toBe(false)
    expect(nothingLeft(t, 'A', new Set([1]))).toBe(true)
  })
})

describe('handed-out transfers end', () => {
  it('with a poll asking for nothing, with the peer leaving, and with the task failing or restarting', () => {
    const { service, scheduler } = setup([peer('R'), peer('S')])
    const t = task(service, 3)
    expect(scheduler.schedule(t, 'R', new Set(), 1)).toHaveLength(1)
    expect(scheduler.pending).toBe(1)
    // R names nothing it fetches and asks for nothing: the assignment is stale
    scheduler.schedule(t, 'R', new Set(), 0)
    expect(scheduler.pending).toBe(0)

    expect(scheduler.schedule(t, 'R', new Set(), 1)).toHaveLength(1)
    service.forgetPeer('R')
    expect(scheduler.pending).toBe(0)

    expect(scheduler.schedule(t, 'S', new Set(), 1)).toHaveLength(1)
    t.fail({ code: 'ERR_X', message: 'x' })
    expect(scheduler.pending).toBe(0)

    const u = task(service, 3, 'd'.repeat(64))
    expect(scheduler.schedule(u, 'S', new Set(), 1)).toHaveLength(1)
    u.reset('http://origin/blob')
    expect(scheduler.pending).toBe(0)
  })
})
