import { InvalidConfigError } from '../errors.ts'

/** The disk limit a {@link PieceStore} keeps to; see {@link pickEvictions}. */
export interface DiskQuotaInit {
  /** Bytes of piece data the store may hold; 0 means no limit. @default 0 */
  quota?: number
  /** Eviction starts when usage goes over this fraction of the quota. @default 0.9 */
  highWatermark?: number
  /** Eviction stops once usage is at or under this fraction of the quota. @default 0.8 */
  lowWatermark?: number
}

/** What the policy needs to know about one stored task. */
export interface EvictionCandidate {
  taskId: string
  /** Bytes of recorded pieces. */
  bytes: number
  /** When the task was last written or read (ms since the epoch). */
  lastUsed: number
  /** Whole on disk (only complete tasks are ever evicted). */
  complete: boolean
  /** A download, a client or a peer is using it right now: never evicted. */
  inUse: boolean
}

export interface DiskQuota {
  quota: number
  highWatermark: number
  lowWatermark: number
}

/** Checks and fills in the defaults. @throws {InvalidConfigError} */
export function diskQuota (init: DiskQuotaInit = {}): DiskQuota {
  const quota = init.quota ?? 0
  const highWatermark = init.highWatermark ?? 0.9
  const lowWatermark = init.lowWatermark ?? 0.8
  if (!Number.isSafeInteger(quota) || quota < 0) {
    throw new InvalidConfigError(`disk quota must be a whole number of bytes >= 0, not ${quota}`)
  }
  if (!(lowWatermark > 0 && lowWatermark <= highWatermark && highWatermark <= 1)) {
    throw new InvalidConfigError(`disk watermarks must satisfy 0 < low (${lowWatermark}) <= high (${highWatermark}) <= 1`)
  }
  return { quota, highWatermark, lowWatermark }
}

/** Whether usage is over the high watermark (never, without a quota). */
export function overHighWatermark (limits: DiskQuota, usage: number): boolean {
  return limits.quota > 0 && usage > limits.quota * limits.highWatermark
}

/**
 * The tasks to evict, least recently used first, to bring `usage` down to the low
 * watermark: complete tasks that nothing is using. Returns fewer (or none) when there
 * is not enough such data; `force` evicts down to the low watermark even when usage is
 * not over the high one, and frees at least `need` bytes beyond that (a write just failed
 * for lack of space).
 */
export function pickEvictions (limits: DiskQuota, usage: number, candidates: EvictionCandidate[], options: { force?: boolean, need?: number } = {}): string[] {
  if (options.force !== true && !overHighWatermark(limits, usage)) {
    return []
  }
  const low = limits.quota > 0 ? limits.quota * limits.lowWatermark : usage
  const target = options.force === true ? Math.min(low, usage - (options.need ?? 0)) : low
  const evictable = candidates
    .filter(c => c.complete && !c.inUse)
    .sort((x, y) => x.lastUsed - y.lastUsed)
  const picked: string[] = []
  let left = usage
  // bounded by the candidates
  for (const c of evictable) {
    if (left <= target) {
      break
    }
    picked.push(c.taskId)
    left -= c.bytes
  }
  return picked
}
