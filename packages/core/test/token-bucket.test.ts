import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { TokenBucket, type TokenBucketInit } from '../src/rate/token-bucket.ts'

/** A promise's state without waiting for it. */
function track (promise: Promise<void>): { done: () => boolean, error: () => unknown } {
  let done = false
  let error: unknown
  promise.then(() => { done = true }, (err: unknown) => { error = err; done = true })
  return { done: () => done, error: () => error }
}

describe('TokenBucket', () => {
  const waits: number[] = []
  const bucket = (init: TokenBucketInit): TokenBucket =>
    new TokenBucket({ now: () => Date.now(), onWait: (s) => { waits.push(s) } }, init)

  beforeEach(() => {
    vi.useFakeTimers()
    waits.length = 0
  })

  afterEach(() => {
    vi.useRealTimers()
  })

  it('with rate 0 never waits and sets no timer', async () => {
    const b = bucket({ rate: 0 })
    expect(b.limited).toBe(false)
    for (let i = 0; i < 100; i++) {
      await b.take(1024 ** 3)
    }
    expect(vi.getTimerCount()).toBe(0)
    expect(waits).toEqual([])
  })

  it('holds the rate: after the burst, bytes move at rate bytes per second', async () => {
    const b = bucket({ rate: 1000 })
    expect(b.burst).toBe(1000)
    const start = Date.now()
    let moved = 0
    // 10 takes of 500 bytes, one after the other: 1000 from the burst, 4000 at the rate
    const run = (async () => {
      for (let i = 0; i < 10; i++) {
        await b.take(500)
        moved += 500
      }
    })()
    await vi.advanceTimersByTimeAsync(0)
    expect(moved).toBe(1000)
    await vi.advanceTimersByTimeAsync(1999)
    expect(moved).toBeLessThan(3000)
    await vi.advanceTimersByTimeAsync(2001)
    await run
    expect(moved).toBe(5000)
    expect(Date.now() - start).toBeGreaterThanOrEqual(4000)
    expect(Date.now() - start).toBeLessThanOrEqual(4010)
    expect(vi.getTimerCount()).toBe(0)
    // the eight takes that waited, about half a second each
    expect(waits).toHaveLength(8)
    expect(waits.reduce((a, s) => a + s, 0)).toBeCloseTo(4, 1)
  })

  it('serves waiters in arrival order: a small take does not overtake a large one', async () => {
    const b = bucket({ rate: 1000 })
    await b.take(1000)
    const order: string[] = []
    const large = b.take(800).then(() => { order.push('large') })
    const small = b.take(100).then(() => { order.push('small') })
    expect(b.waiting).toBe(2)
    // 100 tokens are there long before 800 are: the small take still waits its turn
    await vi.advanceTimersByTimeAsync(500)
    expect(order).toEqual([])
    // nor does one arriving while the bucket holds enough for it but not for the head
    const late = b.take(100).then(() => { order.push('late') })
    await vi.advanceTimersByTimeAsync(0)
    expect(order).toEqual([])
    await vi.advanceTimersByTimeAsync(300)
    expect(order).toEqual(['large'])
    await vi.advanceTimersByTimeAsync(200)
    await Promise.all([large, small, late])
    expect(order).toEqual(['large', 'small', 'late'])
    expect(b.waiting).toBe(0)
  })

  it('an aborted waiter leaves the queue at once, and the next is served without its cost', async () => {
    const b = bucket({ rate: 1000 })
    await b.take(1000)
    const controller = new AbortController()
    const big = track(b.take(1000, { signal: controller.signal }))
    const next = track(b.take(100))
    await vi.advanceTimersByTimeAsync(50)
    controller.abort(new Error('gone'))
    await vi.advanceTimersByTimeAsync(0)
    expect(big.done()).toBe(true)
    expect((big.error() as Error).message).toBe('gone')
    expect(b.waiting).toBe(1)
    await vi.advanceTimersByTimeAsync(49)
    expect(next.done()).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    expect(next.done()).toBe(true)
    expect(next.error()).toBeUndefined()
    expect(b.waiting).toBe(0)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('refuses at once when the signal is already aborted', async () => {
    const b = bucket({ rate: 1000 })
    await expect(b.take(10, { signal: AbortSignal.abort(new Error('no')) })).rejects.toThrow('no')
    expect(b.waiting).toBe(0)
  })

  it('a take larger than the burst goes through, and later takes wait out the debt', async () => {
    const b = bucket({ rate: 1000, burst: 1000 })
    await b.take(3000)
    const next = track(b.take(1))
    await vi.advanceTimersByTimeAsync(2000)
    expect(next.done()).toBe(false)
    await vi.advanceTimersByTimeAsync(1001)
    expect(next.done()).toBe(true)
  })

  it('keeps one timer however many wait', async () => {
    const b = bucket({ rate: 1000 })
    await b.take(1000)
    const all = Array.from({ length: 50 }, async () => { await b.take(100) })
    expect(b.waiting).toBe(50)
    expect(vi.getTimerCount()).toBe(1)
    await vi.advanceTimersByTimeAsync(5000)
    await Promise.all(all)
    expect(b.waiting).toBe(0)
    expect(vi.getTimerCount()).toBe(0)
  })
})
