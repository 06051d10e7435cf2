import { describe, expect, it } from 'vitest'
import { PeerRegistry, Scheduler, Task } from '../src/index.ts'
import type { PeerInfo } from '@shoal/core'

const SELF = { peerId: 'SuperNode', addrs: ['/ip4/127.0.0.1/tcp/8003/p2p/SuperNode'] }
const peer = (id: string): PeerInfo => ({ peerId: id, addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${id}`], hostname: id })

function taskWithPieces (n: number): Task {
  const task = new Task({ id: 'c'.repeat(64), url: 'http://origin/blob' })
  task.start(n * 10, 10)
  for (let num = 0; num < n; num++) {
    task.addPiece({ num, offset: num * 10, length: 10, digest: `sha256:${String(num).padStart(64, '0')}` })
  }
  return task
}

function setup (peerIds: string[], init = {}): { scheduler: Scheduler, peers: PeerRegistry } {
  const peers = new PeerRegistry(init)
  for (const id of peerIds) {
    peers.upsert(peer(id))
  }
  return { scheduler: new Scheduler({ peers, self: () => SELF }), peers }
}

describe('Scheduler', () => {
  it('hands out pieces in order, skipping those held or running, up to the limit', () => {
    const { scheduler } = setup(['A'])
    const task = taskWithPieces(6)
    task.addHolder(0, 'A')
    const out = scheduler.schedule(task, 'A', new Set([1, 3]), 2)
    expect(out.map(a => a.num)).toEqual([2, 4])
  })

  it('offers the supernode alone when no other peer holds the piece', () => {
    const { scheduler } = setup(['A'])
    const [a] = scheduler.schedule(taskWithPieces(1), 'A', new Set(), 1)
    expect(a?.sources).toEqual([{ ...SELF, kind: 'supernode' }])
  })

  it('puts peers that hold the piece before the supernode, never the requester', () => {
    const { scheduler } = setup(['A', 'B', 'C'])
    const task = taskWithPieces(2)
    task.addHolder(0, 'A')
    task.addHolder(0, 'B')
    task.addHolder(1, 'B')
    const [a] = scheduler.schedule(task, 'A', new Set(), 1)
    expect(a?.num).toBe(1)
    expect(a?.sources.map(s => s.peerId)).toEqual(['B', 'SuperNode'])
    const [c] = scheduler.schedule(task, 'C', new Set(), 1)
    expect(c?.sources.map(s => s.kind)).toEqual(['peer', 'peer', 'supernode'])
  })

  it('waits for a peer that turned someone away as busy, rather than serve its piece from the supernode', () => {
    const { scheduler, peers } = setup(['A', 'B', 'C'], { busyBackoff: 60_000 })
    const task = taskWithPieces(2)
    task.addHolder(0, 'A')
    task.addHolder(1, 'B')
    peers.recordBusy('A')
    // piece 0 is held only by A, busy: not handed out now; piece 1 comes from B
    const out = scheduler.schedule(task, 'C', new Set(), 2)
    expect(out.map(a => [a.num, a.sources[0]?.peerId])).toEqual([[1, 'B']])
    expect(peers.isBusy('A')).toBe(true)
    // busy is load, not a fault: A is offered again once the back-off is over
    const { scheduler: later, peers: registry } = setup(['A', 'C'], { busyBackoff: 0 })
    registry.recordBusy('A')
    expect(later.schedule(task, 'C', new Set(), 1)[0]?.sources[0]?.peerId).toBe('A')
  })

  it('spreads load: the least busy holder goes first', () => {
    const { scheduler } = setup(['A', 'B', 'X', 'Y', 'Z'])
    const task = taskWithPieces(2)
    for (const num of [0, 1]) {
      task.addHolder(num, 'A')
      task.addHolder(num, 'B')
    }
    const x = scheduler.schedule(task, 'X', new Set(), 1)[0]!
    const y = scheduler.schedule(task, 'Y', new Set(), 1)[0]!
    expect(new Set([x.sources[0]?.peerId, y.sources[0]?.peerId])).toEqual(new Set(['A', 'B']))
    // once X's transfer settles, its source is free again, and the next peer goes there
    scheduler.settle(task.id, 'X', x.num)
    expect(scheduler.schedule(task, 'Z', new Set(), 1)[0]?.sources[0]?.peerId).toBe(x.sources[0]?.peerId)
  })

  it('seeds each piece to one peer at a time, sending the others to different pieces', () => {
    const { scheduler } = setup(['A', 'B', 'C'])
    const task = taskWithPieces(4)
    expect(scheduler.schedule(task, 'A', new Set(), 2).map(a => a.num)).toEqual([0, 1])
    expect(scheduler.schedule(task, 'B', new Set(), 2).map(a => a.num)).toEqual([2, 3])
    // everything is being seeded: C waits rather than pile onto the supernode
    expect(scheduler.schedule(task, 'C', new Set(), 2)).toEqual([])
    // once A holds piece 0, C gets it from A
    task.addHolder(0, 'A')
    scheduler.settle(task.id, 'A', 0)
    const [c] = scheduler.schedule(task, 'C', new Set(), 2)
    expect(c?.num).toBe(0)
    expect(c?.sources.map(s => s.peerId)).toEqual(['A', 'SuperNode'])
  })

  it('never sends more peers to the supernode than it has upload slots', () => {
    const peers = new PeerRegistry()
    for (const id of ['A', 'B']) {
      peers.upsert(peer(id))
    }
    const scheduler = new Scheduler({ peers, self: () => SELF }, { maxSeeding: 2 })
    const task = taskWithPieces(4)
    expect(scheduler.schedule(task, 'A', new Set(), 4).map(a => a.num)).toEqual([0, 1])
    expect(scheduler.schedule(task, 'B', new Set(), 4)).toEqual([])
    task.addHolder(0, 'A')
    scheduler.settle(task.id, 'A', 0)
    // one slot free again, and piece 0 now comes from A
    expect(scheduler.schedule(task, 'B', new Set(), 4).map(a => [a.num, a.sources[0]?.peerId])).toEqual([[0, 'A'], [2, 'SuperNode']])
  })

  it('hands a seeding slot on when its transfer fails or expires', () => {
    const { scheduler } = setup(['A', 'B'])
    const task = taskWithPieces(1)
    expect(scheduler.schedule(task, 'A', new Set(), 1).map(a => a.num)).toEqual([0])
    expect(scheduler.schedule(task, 'B', new Set(), 1)).toEqual([])
    scheduler.settle(task.id, 'A', 0)
    expect(scheduler.schedule(task, 'B', new Set(), 1).map(a => a.num)).toEqual([0])

    const expiring = new Scheduler({ peers: new PeerRegistry(), self: () => SELF }, { assignmentTtl: -1 })
    expect(expiring.schedule(task, 'A', new Set(), 1).map(a => a.num)).toEqual([0])
    expect(expiring.schedule(task, 'B', new Set(), 1).map(a => a.num)).toEqual([0])
  })

  it('releases what it handed a peer that no longer fetches it (a daemon restarted under the same peer id)', () => {
    const { scheduler } = setup(['A', 'B'])
    const task = taskWithPieces(1)
    expect(scheduler.schedule(task, 'A', new Set(), 1).map(a => a.num)).toEqual([0])
    // A still fetching piece 0: B waits for it rather than have the supernode seed it twice
    expect(scheduler.schedule(task, 'A', new Set([0]), 1)).toEqual([])
    expect(scheduler.schedule(task, 'B', new Set(), 1)).toEqual([])
    // A came back without piece 0 in flight: it gets the piece now, not after the assignment expires
    expect(scheduler.schedule(task, 'A', new Set(), 1).map(a => a.num)).toEqual([0])
  })

  it('leaves out a peer after repeated failures, until its cooldown ends', () => {
    const { scheduler, peers } = setup(['A', 'B'], { failureLimit: 2, cooldown: 60_000 })
    const task = taskWithPieces(1)
    task.addHolder(0, 'A')
    peers.recordTransfer('A', false)
    expect(scheduler.schedule(task, 'B', new Set(), 1)[0]?.sources[0]?.peerId).toBe('A')
    peers.recordTransfer('A', false)
    expect(scheduler.schedule(task, 'B', new Set(), 1)[0]?.sources.map(s => s.peerId)).toEqual(['SuperNode'])
  })

  it('forgets a departed peer', () => {
    const { scheduler, peers } = setup(['A', 'B'])
    const task = taskWithPieces(1)
    task.addHolder(0, 'A')
    peers.remove('A')
    task.removePeer('A')
    expect(scheduler.schedule(task, 'B', new Set(), 1)[0]?.sources.map(s => s.peerId)).toEqual(['SuperNode'])
  })
})
