import { MAX_WAKE_CANDIDATES, MAX_WAKE_CHECKS } from './constants.ts'

/** A long poll waiting for something to fetch. */
interface Waiter {
  peerId: string
  /** Whether this waiter lacks piece `num` (and is not fetching it): a cheap check, no scheduling */
  wants: (num: number) => boolean
  wake: () => void
}

/**
 * The long polls waiting on each task. A change wakes only the waiters it can help: a
 * new holder of a piece wakes up to as many waiters lacking that piece as the holder
 * can serve; a freed upload slot wakes one; only a change of the task's state wakes
 * all. The others keep waiting, so one report costs a few scheduling passes, not one
 * per long poller.
 */
export class Waiters {
  private readonly byTask = new Map<string, Set<Waiter>>()

  /**
   * Resolves when woken, after `ms`, or when `signal` aborts, whichever is first.
   * `wants` says whether this waiter lacks a piece.
   */
  async wait (taskId: string, peerId: string, wants: (num: number) => boolean, ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted === true || ms <= 0) {
      return
    }
    let set = this.byTask.get(taskId)
    if (set == null) {
      set = new Set()
      this.byTask.set(taskId, set)
    }
    const waiters = set
    await new Promise<void>(resolve => {
      const waiter: Waiter = {
        peerId,
        wants,
        wake: () => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', waiter.wake)
          waiters.delete(waiter)
          if (waiters.size === 0 && this.byTask.get(taskId) === waiters) {
            this.byTask.delete(taskId)
          }
          resolve()
        }
      }
      const timer = setTimeout(waiter.wake, ms)
      signal?.addEventListener('abort', waiter.wake, { once: true })
      waiters.add(waiter)
    })
  }

  /**
   * Wakes up to `budget` waiters on the task that lack piece `num`, longest waiting
   * first, leaving out `except` (the peer that now holds it). Returns how many woke.
   */
  wakeWanting (taskId: string, num: number, budget: number, except?: string): number {
    const set = this.byTask.get(taskId)
    if (set == null || budget <= 0) {
      return 0
    }
    let woken = 0
    // bounded by the waiters on the task; each check is two set lookups
    for (const waiter of set) { // deleting the current entry while iterating a Set is safe
      if (woken >= budget) {
        break
      }
      if (waiter.peerId !== except && waiter.wants(num)) {
        waiter.wake()
        woken++
      }
    }
    return woken
  }

  /**
   * Wakes up to `budget` waiters on the task that lack any of `nums()`, longest waiting
   * first; used when an upload slot frees up. The candidate pieces are taken once per
   * wake (at most MAX_WAKE_CANDIDATES), and at most MAX_WAKE_CHECKS checks are made in
   * all: a freed slot costs a bounded amount, however many waiters and pieces.
   */
  wakeWantingAny (taskId: string, nums: () => Iterable<number>, budget: number): number {
    const set = this.byTask.get(taskId)
    if (set == null || budget <= 0) {
      return 0
    }
    const candidates: number[] = []
    for (const num of nums()) {
      if (candidates.length >= MAX_WAKE_CANDIDATES) {
        break
      }
      candidates.push(num)
    }
    let woken = 0
    let checks = 0
    for (const waiter of set) { // deleting the current entry while iterating a Set is safe
      if (woken >= budget || checks >= MAX_WAKE_CHECKS) {
        break
      }
      for (const num of candidates) {
        if (++checks > MAX_WAKE_CHECKS) {
          break
        }
        if (waiter.wants(num)) {
          waiter.wake()
          woken++
          break
        }
      }
    }
    return woken
  }

  /** Wakes every waiter on the task: its state changed (ready, done, failed). */
  wakeAll (taskId: string): number {
    const set = this.byTask.get(taskId)
    if (set == null) {
      return 0
    }
    let woken = 0
    for (const waiter of set) {
      waiter.wake()
      woken++
    }
    return woken
  }

  /** Long polls waiting, on one task or on all. */
  count (taskId?: string): number {
    if (taskId != null) {
      return this.byTask.get(taskId)?.size ?? 0
    }
    let n = 0
    for (const set of this.byTask.values()) {
      n += set.size
    }
    return n
  }
}
