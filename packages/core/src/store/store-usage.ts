/**
 * The piece store's bookkeeping for its disk limit: bytes recorded per task, when each
 * task was last used, and which are in use now (pinned). In memory; the store rebuilds
 * it from its index at start and keeps last use in the index too.
 */
export class StoreUsage {
  private readonly pieces = new Map<string, Map<number, number>>()
  private readonly used = new Map<string, number>()
  private readonly pins = new Map<string, number>()
  private bytes = 0

  /** Bytes of recorded pieces, all tasks together. */
  get total (): number {
    return this.bytes
  }

  taskBytes (taskId: string): number {
    let n = 0
    for (const len of this.pieces.get(taskId)?.values() ?? []) {
      n += len
    }
    return n
  }

  addPiece (taskId: string, num: number, length: number): void {
    let map = this.pieces.get(taskId)
    if (map == null) {
      map = new Map()
      this.pieces.set(taskId, map)
    }
    this.bytes += length - (map.get(num) ?? 0)
    map.set(num, length)
  }

  /** Forgets some pieces of a task, or all of them. */
  dropPieces (taskId: string, nums?: number[]): void {
    const map = this.pieces.get(taskId)
    if (map == null) {
      return
    }
    for (const num of nums ?? [...map.keys()]) {
      this.bytes -= map.get(num) ?? 0
      map.delete(num)
    }
    if (map.size === 0) {
      this.pieces.delete(taskId)
    }
  }

  forget (taskId: string): void {
    this.dropPieces(taskId)
    this.used.delete(taskId)
  }

  touch (taskId: string, at = Date.now()): void {
    this.used.set(taskId, at)
  }

  lastUsed (taskId: string): number {
    return this.used.get(taskId) ?? 0
  }

  /** Marks the task in use until the returned function is called (once). */
  pin (taskId: string): () => void {
    this.pins.set(taskId, (this.pins.get(taskId) ?? 0) + 1)
    let released = false
    return () => {
      if (released) {
        return
      }
      released = true
      const n = (this.pins.get(taskId) ?? 1) - 1
      if (n <= 0) {
        this.pins.delete(taskId)
      } else {
        this.pins.set(taskId, n)
      }
    }
  }

  inUse (taskId: string): boolean {
    return this.pins.has(taskId)
  }
}
