import { describe, expect, it } from 'vitest'
import { rendezvousScore, SupernodeRing } from '../src/index.ts'

const members = (...ids: string[]): Array<{ id: string }> => ids.map(id => ({ id }))
const taskIds = Array.from({ length: 3000 }, (_, i) => `sha256:${i.toString(16).padStart(64, '0')}`)

describe('SupernodeRing', () => {
  it('assigns a task the same way whatever the order the supernodes are given in', () => {
    const a = new SupernodeRing(members('/ip4/10.0.0.1/tcp/8003', '/ip4/10.0.0.2/tcp/8003', 'http://sn3:8002'))
    const b = new SupernodeRing(members('http://sn3:8002', '/ip4/10.0.0.1/tcp/8003', '/ip4/10.0.0.2/tcp/8003'))
    for (const t of taskIds.slice(0, 200)) {
      expect(b.order(t).map(m => m.id)).toEqual(a.order(t).map(m => m.id))
      expect(a.owner(t)).toBe(a.order(t)[0])
    }
  })

  it('orders every supernode once, by score', () => {
    const ring = new SupernodeRing(members('a', 'b', 'c', 'd'))
    const order = ring.order('task').map(m => m.id)
    expect([...order].sort()).toEqual(['a', 'b', 'c', 'd'])
    const scores = order.map(id => rendezvousScore('task', id))
    expect([...scores].sort((x, y) => x > y ? -1 : x < y ? 1 : 0)).toEqual(scores)
  })

  it('spreads tasks across the supernodes', () => {
    const ids = ['sn-a', 'sn-b', 'sn-c', 'sn-d']
    const ring = new SupernodeRing(members(...ids))
    const count = new Map<string, number>()
    for (const t of taskIds) {
      const owner = ring.owner(t).id
      count.set(owner, (count.get(owner) ?? 0) + 1)
    }
    // 750 each expected; a binomial spread stays well within ±20 %
    for (const id of ids) {
      expect(count.get(id)).toBeGreaterThan(600)
      expect(count.get(id)).toBeLessThan(900)
    }
  })

  it('moves only the tasks of a removed supernode, each to its next choice', () => {
    const full = new SupernodeRing(members('sn-a', 'sn-b', 'sn-c', 'sn-d'))
    const without = new SupernodeRing(members('sn-a', 'sn-b', 'sn-d'))
    let moved = 0
    for (const t of taskIds) {
      const before = full.order(t)
      const after = without.owner(t).id
      if (before[0]?.id === 'sn-c') {
        moved++
        expect(after).toBe(before[1]?.id)
      } else {
        expect(after).toBe(before[0]?.id)
      }
    }
    expect(moved).toBeGreaterThan(0)
    expect(moved).toBeLessThan(taskIds.length / 3)
  })

  it('refuses no supernodes and the same one twice', () => {
    expect(() => new SupernodeRing([])).toThrow(RangeError)
    expect(() => new SupernodeRing(members('a', 'a'))).toThrow(RangeError)
  })
})
