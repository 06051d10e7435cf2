import { describe, expect, it } from 'vitest'
import { RecentBytes } from '../src/api/recent-bytes.ts'

/** Counters that grow as the test says, and a clock the test moves. */
function fixture (): { counters: { origin: number, supernode: number, peer: number }, clock: { t: number }, recent: RecentBytes } {
  const counters = { origin: 0, supernode: 0, peer: 0 }
  const clock = { t: 1_000_000 }
  const recent = new RecentBytes({ read: async () => ({ ...counters }), now: () => clock.t }, { interval: 60_000, window: 3_600_000 })
  return { counters, clock, recent }
}

describe('RecentBytes: bytes by source over the last hour', () => {
  it('counts what arrived since the start while the daemon is younger than the window, up to now', async () => {
    const { counters, clock, recent } = fixture()
    counters.peer = 500 // before the first reading: not in any window
    await recent.sample()
    clock.t += 10_000
    counters.peer += 300
    counters.supernode += 40
    // no reading since the first: the report still runs until now
    expect(await recent.report()).toEqual({ windowSeconds: 10, bytesBySource: { origin: 0, supernode: 40, peer: 300 } })
  })

  it('forgets what arrived more than an hour ago', async () => {
    const { counters, clock, recent } = fixture()
    await recent.sample()
    counters.origin += 1_000 // in the first minute
    for (let minute = 1; minute <= 90; minute++) {
      clock.t += 60_000
      if (minute === 80) {
        counters.peer += 7 // twenty minutes ago, at the end
      }
      await recent.sample()
    }
    const report = await recent.report()
    expect(report.windowSeconds).toBe(3600)
    expect(report.bytesBySource).toEqual({ origin: 0, supernode: 0, peer: 7 })
  })

  it('keeps a bounded number of readings however long it runs', async () => {
    const { clock, recent } = fixture()
    for (let minute = 0; minute < 1_000; minute++) {
      await recent.sample()
      clock.t += 60_000
    }
    // base + a window's worth of readings: never more than window / interval + 2
    expect(recent.readings).toBeLessThanOrEqual(62)
    expect(recent.readings).toBeGreaterThan(1)
  })
})
