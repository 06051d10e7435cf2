import { constants } from 'node:fs'
import { mkdir, open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { StoreWriteError } from '../errors.ts'
import { diskQuota, overHighWatermark, pickEvictions, type DiskQuota, type DiskQuotaInit } from './disk-quota.ts'
import { PieceWriter } from './piece-writer.ts'
import { damagedPieces } from './store-integrity.ts'
import { StoreUsage } from './store-usage.ts'
import { openTaskReader, type TaskReader } from './task-reader.ts'
import type { TaskState } from '../protocol/api.ts'
import type { PieceWriterOptions, StoredPiece } from './piece-writer.ts'
import type { PieceRange } from '../pieces.ts'
import type { ComponentLogger, Logger } from '../logger.ts'

/** What the store remembers about a task. */
export interface StoredTask {
  taskId: string
  url: string
  digest?: string
  contentLength: number | null
  pieceSize: number
  state: TaskState
  updatedAt: number
}

export interface PieceStoreInit {
  /** Directory holding `tasks/<taskId>.data` files and the `meta` database */
  dataDir: string
  /** The disk limit: quota in bytes (0: none) and watermarks. @default no limit; watermarks 0.9 / 0.8 */
  disk?: DiskQuotaInit
}

/** Why a task left the store on its own: its data was damaged, or it was evicted for space. */
export type TaskDropReason = 'damaged' | 'evicted'

/** Told when the store drops a task's pieces by itself; the owner of the task forgets them. */
export type TaskDropListener = (taskId: string, reason: TaskDropReason) => void

export interface PieceStoreComponents {
  logger: ComponentLogger
}

const PIECE_NUM_WIDTH = 9
/** Last use goes to the index at most this often per task. */
const USE_PERSIST_MS = 10_000

interface PendingRecord {
  taskId: string
  piece: StoredPiece
  resolve: () => void
  reject: (err: Error) => void
}

const taskKey = (taskId: string): string => `task!${taskId}`
const usedKey = (taskId: string): string => `used!${taskId}`
const piecePrefix = (taskId: string): string => `piece!${taskId}!`
const pieceKey = (taskId: string, num: number): string => `${piecePrefix(taskId)}${String(num).padStart(PIECE_NUM_WIDTH, '0')}`

/**
 * Pieces on disk: one sparse data file per task, written at each piece's offset, and a
 * LevelDB index of tasks and verified pieces.
 *
 * A piece is recorded only after its bytes are synced to disk and its digest checked,
 * so after a crash every recorded piece is whole; a piece cut off mid-write was never
 * recorded and is fetched again. Recording is a group commit: pieces that finish while
 * one sync is under way share the next (one fdatasync per data file, then one synced
 * index batch), so a busy host pays two syncs per batch rather than per piece, and an
 * idle one no more latency than before.
 */
export class PieceStore {
  private readonly dataDir: string
  private readonly log: Logger
  private db?: Level<string, unknown>
  private pending: PendingRecord[] = []
  private committing?: Promise<void>
  private evicting?: Promise<void>
  private readonly usage = new StoreUsage()
  private readonly limits: DiskQuota
  private readonly listeners: TaskDropListener[] = []

  constructor (components: PieceStoreComponents, init: PieceStoreInit) {
    this.dataDir = init.dataDir
    this.log = components.logger.forComponent('shoal:store')
    this.limits = diskQuota(init.disk)
  }

  /**
   * Opens the index and checks it against the data files: pieces whose bytes are not
   * on disk (file missing or short) are dropped, so they are fetched again.
   */
  async start (): Promise<void> {
    await mkdir(join(this.dataDir, 'tasks'), { recursive: true })
    const db = new Level<string, unknown>(join(this.dataDir, 'meta'), { valueEncoding: 'json' })
    await db.open()
    this.db = db
    // bounded by the tasks in the index
    for (const task of await this.listTasks()) {
      await this.checkTask(task.taskId)
      this.usage.touch(task.taskId, (await this.meta.get(usedKey(task.taskId)) as number | undefined) ?? task.updatedAt)
    }
    this.log.debug({ dataDir: this.dataDir, bytes: this.usage.total }, 'piece store open')
  }

  /** When a task was last read or written (ms since the epoch; 0 if never). */
  lastUsed (taskId: string): number {
    return this.usage.lastUsed(taskId)
  }

  /** The disk quota in bytes this store keeps to; 0: none. */
  get quota (): number {
    return this.limits.quota
  }

  /** Bytes of recorded pieces on disk. */
  get bytesStored (): number {
    return this.usage.total
  }

  /** Calls `listener` whenever the store drops a task (damaged data, eviction). */
  onTaskDropped (listener: TaskDropListener): void {
    this.listeners.push(listener)
  }

  /**
   * Marks a task in use (a download running, a client reading): it is not evicted until
   * the returned function is called. Readers and writers pin their task themselves.
   */
  pin (taskId: string): () => void {
    return this.usage.pin(taskId)
  }

  /**
   * Compares a task's recorded pieces with its data file and drops those whose bytes are
   * not there (file missing, or ending before the piece does). Listeners hear of it.
   *
   * @returns the pieces kept (the index read once serves the caller too) and those dropped
   */
  async checkTask (taskId: string, options: { signal?: AbortSignal } = {}): Promise<{ intact: StoredPiece[], damaged: StoredPiece[] }> {
    const pieces = await this.listPieces(taskId)
    for (const p of pieces) {
      this.usage.addPiece(taskId, p.num, p.length)
    }
    options.signal?.throwIfAborted()
    const damaged = await damagedPieces(this.dataPath(taskId), pieces)
    if (damaged.length > 0) {
      this.log.warn({ taskId, pieces: damaged.length, of: pieces.length }, 'data file is missing or shorter than its index; dropping those pieces')
      await this.meta.batch(damaged.map(p => ({ type: 'del' as const, key: pieceKey(taskId, p.num) })), { sync: true })
      this.usage.dropPieces(taskId, damaged.map(p => p.num))
      this.emit(taskId, 'damaged')
    }
    const lost = new Set(damaged.map(p => p.num))
    return { intact: pieces.filter(p => !lost.has(p.num)), damaged }
  }

  /**
   * Evicts complete tasks nobody is using, least recently used first, while usage is over
   * the high watermark, down to the low one. `force` evicts down to the low watermark
   * and at least `need` bytes besides, whatever the usage (a write found the disk full).
   * One eviction runs at a time.
   *
   * @returns the tasks evicted
   */
  async evict (options: { force?: boolean, need?: number, signal?: AbortSignal } = {}): Promise<string[]> {
    // bounded: each pass waits for one running eviction to end
    while (this.evicting != null) {
      await this.evicting
    }
    const { promise, resolve } = Promise.withResolvers<void>()
    this.evicting = promise
    try {
      const candidates = (await this.listTasks()).map(t => ({
        taskId: t.taskId,
        bytes: this.usage.taskBytes(t.taskId),
        lastUsed: this.usage.lastUsed(t.taskId),
        complete: t.state === 'success',
        inUse: this.usage.inUse(t.taskId)
      }))
      const picked = pickEvictions(this.limits, this.usage.total, candidates, options)
      const evicted: string[] = []
      for (const taskId of picked) {
        options.signal?.throwIfAborted()
        // checked again right before: a reader may have come meanwhile
        if (this.usage.inUse(taskId)) {
          continue
        }
        await this.deleteTask(taskId)
        evicted.push(taskId)
        this.emit(taskId, 'evicted')
      }
      if (evicted.length > 0) {
        this.log.info({ evicted: evicted.length, bytes: this.usage.total, quota: this.limits.quota }, 'evicted least recently used tasks')
      }
      return evicted
    } finally {
      this.evicting = undefined
      resolve()
    }
  }

  private emit (taskId: string, reason: TaskDropReason): void {
    for (const listener of this.listeners) {
      try {
        listener(taskId, reason)
      } catch (err) {
        this.log.error({ err, taskId }, 'a task drop listener failed')
      }
    }
  }

  /**
   * Records that a task was used now: in memory, and in the index (unsynced: it is a
   * hint) at most every {@link USE_PERSIST_MS}, not once per piece served. Readers and
   * writers do it themselves; an owner calls it for uses the store does not see (peers
   * asking the supernode about a task they are downloading).
   */
  touch (taskId: string): void {
    const now = Date.now()
    const last = this.usage.lastUsed(taskId)
    this.usage.touch(taskId, now)
    if (now - last >= USE_PERSIST_MS) {
      this.meta.put(usedKey(taskId), now).catch((err: unknown) => { this.log.debug({ err, taskId }, 'cannot record last use') })
    }
  }

  private evictIfOver (): void {
    if (this.evicting == null && overHighWatermark(this.limits, this.usage.total)) {
      this.evict().catch((err: unknown) => { this.log.error({ err }, 'eviction failed') })
    }
  }

  async stop (): Promise<void> {
    // bounded: writers are stopped before the store, so nothing new is queued
    while (this.committing != null) {
      await this.committing
    }
    await this.db?.close()
    this.db = undefined
  }

  private get meta (): Level<string, unknown> {
    if (this.db == null) {
      throw new Error('piece store is not started')
    }
    return this.db
  }

  dataPath (taskId: string): string {
    return join(this.dataDir, 'tasks', `${taskId}.data`)
  }

  /** @throws {StoreWriteError} when the index cannot be written (a full disk) */
  async putTask (task: StoredTask): Promise<void> {
    try {
      await this.meta.put(taskKey(task.taskId), task, { sync: true })
    } catch (err) {
      throw new StoreWriteError(`cannot record task ${task.taskId}: ${(err as Error).message}`, { cause: err })
    }
  }

  async getTask (taskId: string): Promise<StoredTask | undefined> {
    return await this.meta.get(taskKey(taskId)) as StoredTask | undefined
  }

  async listTasks (): Promise<StoredTask[]> {
    const tasks: StoredTask[] = []
    for await (const value of this.meta.values({ gte: 'task!', lt: 'task"' })) {
      tasks.push(value as StoredTask)
    }
    return tasks
  }

  async getPiece (taskId: string, num: number): Promise<StoredPiece | undefined> {
    return await this.meta.get(pieceKey(taskId, num)) as StoredPiece | undefined
  }

  /** The task's recorded pieces, by number. */
  async listPieces (taskId: string): Promise<StoredPiece[]> {
    const prefix = piecePrefix(taskId)
    const pieces: StoredPiece[] = []
    for await (const value of this.meta.values({ gte: prefix, lt: `${prefix}~` })) {
      pieces.push(value as StoredPiece)
    }
    return pieces
  }

  /**
   * Starts writing one piece. Feed it with `write()`, then `commit()`; `abort()` (or a
   * failed commit) leaves nothing recorded.
   */
  async openPieceWriter (taskId: string, range: PieceRange, options: PieceWriterOptions = {}): Promise<PieceWriter> {
    let file
    try {
      file = await open(this.dataPath(taskId), constants.O_RDWR | constants.O_CREAT, 0o644)
    } catch (err) {
      // no inode or directory block left is a full disk too: this host's fault, not a source's
      throw new StoreWriteError(`cannot open the data file of task ${taskId}: ${(err as Error).message}`, { cause: err })
    }
    this.touch(taskId)
    return new PieceWriter(file, range, options, async (piece) => { await this.recordPiece(taskId, piece) }, this.usage.pin(taskId))
  }

  /**
   * Records a piece whose bytes are in the task's data file: resolves once the data is
   * synced and the index entry written (synced). Pieces recorded while a commit runs are
   * committed together by the next one.
   */
  async recordPiece (taskId: string, piece: StoredPiece): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.pending.push({ taskId, piece, resolve, reject })
      this.startCommit()
    })
  }

  private startCommit (): void {
    if (this.committing != null) {
      return
    }
    this.committing = this.commitPending().finally(() => {
      this.committing = undefined
      // a record queued after the last pass looked, but before this ran
      if (this.pending.length > 0) {
        this.startCommit()
      }
    })
  }

  private async commitPending (): Promise<void> {
    // bounded: each pass takes everything queued, and writers queue at most one piece each
    while (this.pending.length > 0) {
      const batch = this.pending
      this.pending = []
      // a data file that cannot be synced (deleted meanwhile, a disk error) fails its
      // own pieces only
      const synced: PendingRecord[] = []
      for (const taskId of new Set(batch.map(r => r.taskId))) {
        const records = batch.filter(r => r.taskId === taskId)
        try {
          await this.syncData(taskId)
          synced.push(...records)
        } catch (err) {
          this.log.error({ err, taskId, pieces: records.length }, 'cannot sync piece data')
          for (const r of records) {
            r.reject(err as Error)
          }
        }
      }
      try {
        await this.meta.batch(synced.map(r => ({ type: 'put' as const, key: pieceKey(r.taskId, r.piece.num), value: r.piece })), { sync: true })
        for (const r of synced) {
          this.usage.addPiece(r.taskId, r.piece.num, r.piece.length)
          r.resolve()
        }
        this.evictIfOver()
      } catch (err) {
        this.log.error({ err, pieces: synced.length }, 'cannot record pieces')
        for (const r of synced) {
          r.reject(err as Error)
        }
      }
    }
  }

  private async syncData (taskId: string): Promise<void> {
    const file = await open(this.dataPath(taskId), constants.O_RDWR)
    try {
      await file.datasync()
    } finally {
      await file.close()
    }
  }

  /** Writes a whole piece from a byte source; see {@link openPieceWriter}. */
  async writePiece (taskId: string, range: PieceRange, source: AsyncIterable<Uint8Array>, options: { expectedDigest?: string, signal?: AbortSignal } = {}): Promise<StoredPiece> {
    const writer = await this.openPieceWriter(taskId, range, options)
    try {
      for await (const chunk of source) {
        options.signal?.throwIfAborted()
        await writer.write(chunk)
      }
      return await writer.commit()
    } catch (err) {
      await writer.abort()
      throw err
    }
  }

  /** Opens a task's data for reading; close the reader when done. */
  async openReader (taskId: string): Promise<TaskReader> {
    const reader = await openTaskReader(this.dataPath(taskId), taskId, () => this.usage.pin(taskId))
    this.touch(taskId)
    return reader
  }

  /**
   * Forgets a task and deletes its data. The data file goes first: on a full disk that
   * frees the room the index needs, and an index entry left without its file (a crash
   * in between) is dropped by the check at start.
   */
  async deleteTask (taskId: string): Promise<void> {
    await rm(this.dataPath(taskId), { force: true })
    const prefix = piecePrefix(taskId)
    await this.meta.clear({ gte: prefix, lt: `${prefix}~` })
    await this.meta.del(taskKey(taskId))
    await this.meta.del(usedKey(taskId))
    this.usage.forget(taskId)
  }

  /** Drops a task's piece records (its data file stays, to be overwritten). */
  async clearPieces (taskId: string): Promise<void> {
    const prefix = piecePrefix(taskId)
    await this.meta.clear({ gte: prefix, lt: `${prefix}~` })
    this.usage.dropPieces(taskId)
  }
}
