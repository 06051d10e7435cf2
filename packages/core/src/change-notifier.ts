/**
 * Lets waiters sleep until something changes: long polls on the supernode, readers
 * streaming a download as it grows.
 */
export class ChangeNotifier {
  private readonly waiters = new Set<() => void>()

  /** Resolves on the next `notify()`, after `ms` (when given), or when `signal` aborts. */
  async wait (options: { ms?: number, signal?: AbortSignal } = {}): Promise<void> {
    const { ms, signal } = options
    if (signal?.aborted === true || (ms != null && ms <= 0)) {
      return
    }
    await new Promise<void>(resolve => {
      const done = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        this.waiters.delete(done)
        resolve()
      }
      const timer = ms != null ? setTimeout(done, ms) : undefined
      signal?.addEventListener('abort', done, { once: true })
      this.waiters.add(done)
    })
  }

  /** Wakes every waiter. */
  notify (): void {
    for (const wake of [...this.waiters]) {
      wake()
    }
  }
}
