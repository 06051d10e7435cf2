import { describe, expect, it } from 'vitest'
import { PeerRegistry, PeerStats, Scheduler, Task } from '../src/index.ts'
import type { PeerInfo } from '@shoal/core'

const SELF = { peerId: 'SuperNode', addrs: ['/ip4/127.0.0.1/tcp/8003/p2p/SuperNode'] }
const MiB = 1024 * 1024

function peer (id: string, place: { idc?: string, location?: string } = {}): PeerInfo {
  return { peerId: id, addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${id}`], hostname: id, ...place }
}

function taskWithPieces (n: number, id = 'c'.repeat(64)): Task {
  const task = new Task({ id, url: 'http://origin/blob' })
  task.start(n * 10, 10)
  for (let num = 0; num < n; num++) {
    task.addPiece({ num, offset: num * 10, length: 10, digest: `sha256:${String(num).padStart(64, '0')}` })
  }
  return task
}

function setup (infos: PeerInfo[], init = {}): { scheduler: Scheduler, peers: PeerRegistry, stats: PeerStats } {
  const peers = new PeerRegistry()
  for (const info of infos) {
    peers.upsert(info)
  }
  const stats = new PeerStats()
  return { scheduler: new Scheduler({ peers, stats, self: () => SELF }, init), peers, stats }
}

const firstSources = (scheduler: Scheduler, task: Task, requester: string): string[] =>
  scheduler.schedule(task, requester, new Set(), 1)[0]?.sources.map(s => s.peerId) ?? []

describe('Scheduler rules', () => {
  it('hands out the rarest piece first', () => {
    const { scheduler } = setup([peer('A'), peer('B'), peer('C')])
    const task = taskWithPieces(3)
    // piece 0 held by A and B, piece 1 by A only, piece 2 by nobody but the supernode
    task.addHolder(0, 'A')
    task.addHolder(0, 'B')
    task.addHolder(1, 'A')
    // with one slot, the rarest of the three goes: piece 2 (no peer holder), then 1, then 0
    expect(scheduler.schedule(task, 'C', new Set(), 1).map(a => a.num)).toEqual([2])
    expect(scheduler.schedule(task, 'C', new Set([2]), 1).map(a => a.num)).toEqual([1])
  })

  it('puts a parent in the same IDC first, whatever the order holders reported in', () => {
    const { scheduler } = setup([peer('X1', { idc: 'x' }), peer('X2', { idc: 'x' }), peer('Y1', { idc: 'y' }), peer('R', { idc: 'y' })], { maxPeerSources: 1 })
    const task = taskWithPieces(1)
    for (const id of ['X1', 'X2', 'Y1']) {
      task.addHolder(0, id)
    }
    for (let i = 0; i < 20; i++) {
      expect(firstSources(scheduler, task, 'R')).toEqual(['Y1', 'SuperNode'])
      scheduler.settle(task.id, 'R', 0)
    }
  })

  it('lets a piece cross into an IDC once at a time, then waits for it to spread there', () => {
    const { scheduler } = setup([peer('X1', { idc: 'x' }), peer('Y1', { idc: 'y' }), peer('Y2', { idc: 'y' })])
    const task = taskWithPieces(1)
    task.addHolder(0, 'X1')
    // Y1 takes it across; Y2 waits for Y1 rather than cross again
    expect(firstSources(scheduler, task, 'Y1')).toEqual(['X1', 'SuperNode'])
    expect(scheduler.schedule(task, 'Y2', new Set(), 1)).toEqual([])
    // once it landed in y, Y2 gets it there, and only there (the supernode stays last resort)
    task.addHolder(0, 'Y1')
    scheduler.settle(task.id, 'Y1', 0)
    expect(firstSources(scheduler, task, 'Y2')).toEqual(['Y1', 'SuperNode'])
  })

  it('waits for a busy parent in its own IDC rather than fetch across', () => {
    const { scheduler } = setup([peer('X1', { idc: 'x' }), peer('Y1', { idc: 'y' }), peer('Y2', { idc: 'y' }), peer('Y3', { idc: 'y' })], { maxPeerUploads: 1 })
    const task = taskWithPieces(1)
    task.addHolder(0, 'X1')
    task.addHolder(0, 'Y1')
    expect(firstSources(scheduler, task, 'Y2')).toEqual(['Y1', 'SuperNode'])
    // Y1 is at its cap: Y3 waits for it, although X1 is free
    expect(scheduler.schedule(task, 'Y3', new Set(), 1)).toEqual([])
  })

  it('after the IDC, prefers the parent sharing the longest location prefix', () => {
    const { scheduler } = setup([
      peer('Far', { idc: 'a', location: 'us|nyc|r1' }),
      peer('Region', { idc: 'a', location: 'eu|ams|r1' }),
      peer('City', { idc: 'a', location: 'eu|fra|r9' }),
      peer('R', { idc: 'a', location: 'eu|fra|r7' })
    ])
    const task = taskWithPieces(1)
    for (const id of ['Far', 'Region', 'City']) {
      task.addHolder(0, id)
    }
    expect(firstSources(scheduler, task, 'R')).toEqual(['City', 'Region', 'Far', 'SuperNode'])
  })

  it('ranks a slow parent down by measured piece times', () => {
    const { scheduler, stats } = setup([peer('Slow'), peer('Fast'), peer('R')])
    const task = taskWithPieces(1)
    task.addHolder(0, 'Slow')
    task.addHolder(0, 'Fast')
    for (let i = 0; i < 5; i++) {
      stats.recordTime('Slow', 4 * MiB, 4_000)
      stats.recordTime('Fast', 4 * MiB, 40)
    }
    for (let i = 0; i < 10; i++) {
      expect(firstSources(scheduler, task, 'R')[0]).toBe('Fast')
      scheduler.settle(task.id, 'R', 0)
    }
  })

  it('sends a parent no more transfers than its cap, then waits rather than use the supernode', () => {
    const requesters = ['R1', 'R2', 'R3', 'R4']
    const { scheduler } = setup([peer('P'), ...requesters.map(id => peer(id))], { maxPeerUploads: 2 })
    const task = taskWithPieces(1)
    task.addHolder(0, 'P')
    expect(firstSources(scheduler, task, 'R1')[0]).toBe('P')
    expect(firstSources(scheduler, task, 'R2')[0]).toBe('P')
    // P is at its cap: R3 gets nothing now (not the supernode)
    expect(scheduler.schedule(task, 'R3', new Set(), 1)).toEqual([])
    expect(scheduler.loadOf('P')).toBe(2)
    scheduler.settle(task.id, 'R1', 0)
    expect(firstSources(scheduler, task, 'R3')[0]).toBe('P')
  })

  it('gives the supernode a higher cap than a peer', () => {
    const requesters = Array.from({ length: 6 }, (_, i) => `R${i}`)
    const { scheduler } = setup(requesters.map(id => peer(id)), { maxPeerUploads: 2, maxSeeding: 6 })
    const task = taskWithPieces(6)
    // six different pieces, none held by a peer: the supernode serves all six at once
    const served = requesters.map(id => scheduler.schedule(task, id, new Set(), 1)[0]?.sources[0]?.kind)
    expect(served).toEqual(Array(6).fill('supernode'))
    expect(scheduler.loadOf('SuperNode')).toBe(6)
  })

  it('serves a piece from the supernode only when no peer can', () => {
    const { scheduler, peers } = setup([peer('A'), peer('R')])
    const task = taskWithPieces(1)
    task.addHolder(0, 'A')
    expect(scheduler.schedule(task, 'R', new Set(), 1)[0]?.sources.map(s => s.kind)).toEqual(['peer', 'supernode'])
    scheduler.settle(task.id, 'R', 0)
    peers.remove('A')
    expect(scheduler.schedule(task, 'R', new Set(), 1)[0]?.sources.map(s => s.kind)).toEqual(['supernode'])
  })

  it('blocks a parent that sent bad bytes for that task, then for every task when it does it again', () => {
    const { scheduler, stats } = setup([peer('Bad'), peer('R')])
    const one = taskWithPieces(1, '1'.repeat(64))
    const two = taskWithPieces(1, '2'.repeat(64))
    const three = taskWithPieces(1, '3'.repeat(64))
    for (const task of [one, two, three]) {
      task.addHolder(0, 'Bad')
    }
    stats.recordBadBytes(one.id, 'Bad', 'R')
    expect(firstSources(scheduler, one, 'R')).toEqual(['SuperNode'])
    expect(firstSources(scheduler, two, 'R')[0]).toBe('Bad')
    scheduler.settle(two.id, 'R', 0)
    // again, on another task, told by the same reporter: one member alone cannot shut
    // a peer out of every task
    stats.recordBadBytes(two.id, 'Bad', 'R')
    expect(stats.isBlocked(three.id, 'Bad')).toBe(false)
    // told by a second reporter: blocked everywhere
    stats.recordBadBytes(two.id, 'Bad', 'S')
    expect(firstSources(scheduler, three, 'R')).toEqual(['SuperNode'])
    expect(stats.isBlocked(three.id, 'Bad', Date.now() + 29 * 60_000)).toBe(true)
    // and longer the third time
    stats.recordBadBytes(three.id, 'Bad', 'R')
    expect(stats.isBlocked('f'.repeat(64), 'Bad', Date.now() + 59 * 60_000)).toBe(true)
  })

  it('lets a first bad-bytes block run out', () => {
    const stats = new PeerStats({ badPieceTaskBlock: 1_000 })
    const now = Date.now()
    stats.recordBadBytes('t', 'Bad', 'R', now)
    expect(stats.isBlocked('t', 'Bad', now + 999)).toBe(true)
    expect(stats.isBlocked('t', 'Bad', now + 1_001)).toBe(false)
    expect(stats.isBlocked('other', 'Bad', now)).toBe(false)
  })

  it('looks at a bounded number of holders however many hold a piece', () => {
    const ids = Array.from({ length: 5_000 }, (_, i) => `H${i}`)
    const { scheduler, peers } = setup([...ids.map(id => peer(id)), peer('R')], { maxHolderScan: 8 })
    const task = taskWithPieces(1)
    for (const id of ids) {
      task.addHolder(0, id)
    }
    let looked = 0
    const isUsable = peers.isUsable.bind(peers)
    peers.isUsable = (id: string) => { looked++; return isUsable(id) }
    for (let i = 0; i < 10; i++) {
      expect(scheduler.schedule(task, 'R', new Set(), 1)).toHaveLength(1)
      scheduler.settle(task.id, 'R', 0)
    }
    // at most 8 usable holders (32 visited) per decision, not 5,000
    expect(looked).toBeGreaterThan(0)
    expect(looked).toBeLessThanOrEqual(10 * 32)
  })

  it('keeps no trace of transfers once they are settled (memory stays flat)', () => {
    const { scheduler } = setup([peer('A'), peer('B')])
    for (let round = 0; round < 50; round++) {
      const task = taskWithPieces(100, round.toString(16).padStart(64, '0'))
      for (const id of ['A', 'B']) {
        for (const a of scheduler.schedule(task, id, new Set(), 64)) {
          scheduler.settle(task.id, id, a.num)
        }
      }
    }
    // every hand-out was settled: nothing in flight, no task state, the expiry queue trimmed
    expect(scheduler.pending).toBe(0)
    expect(scheduler.tasksInFlight).toBe(0)
    expect(scheduler.queued).toBeLessThan(1100)
  })

  it('names the parent\'s IDC and location in its source, for the fetcher to count cross-IDC bytes', () => {
    const { scheduler } = setup([peer('A', { idc: 'x', location: 'eu|fra' }), peer('R', { idc: 'y' })])
    const task = taskWithPieces(1)
    task.addHolder(0, 'A')
    expect(scheduler.schedule(task, 'R', new Set(), 1)[0]?.sources[0]).toMatchObject({ peerId: 'A', idc: 'x', location: 'eu|fra' })
  })
})
