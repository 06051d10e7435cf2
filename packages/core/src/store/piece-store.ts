import { constants } from 'node:fs'
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { StoreReadError } from '../errors.ts'
import { PieceWriter } from './piece-writer.ts'
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
}

export interface PieceStoreComponents {
  logger: ComponentLogger
}

const PIECE_NUM_WIDTH = 9

interface PendingRecord {
  taskId: string
  piece: StoredPiece
  resolve: () => void
  reject: (err: Error) => void
}

/** Reads a task's data file; see {@link PieceStore.openReader}. */
export interface TaskReader {
  /**
   * Fills `buffer` (or its first `length` bytes) from `position`.
   *
   * @throws {StoreReadError} when the file ends first: the data is not what the index says
   */
  readFully(buffer: Uint8Array, position: number, length?: number): Promise<void>
  close(): Promise<void>
}

const taskKey = (taskId: string): string => `task!${taskId}`
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

  constructor (components: PieceStoreComponents, init: PieceStoreInit) {
    this.dataDir = init.dataDir
    this.log = components.logger.forComponent('shoal:store')
  }

  async start (): Promise<void> {
    await mkdir(join(this.dataDir, 'tasks'), { recursive: true })
    const db = new Level<string, unknown>(join(this.dataDir, 'meta'), { valueEncoding: 'json' })
    await db.open()
    this.db = db
    this.log.debug({ dataDir: this.dataDir }, 'piece store open')
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

  async putTask (task: StoredTask): Promise<void> {
    await this.meta.put(taskKey(task.taskId), task, { sync: true })
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
    const file = await open(this.dataPath(taskId), constants.O_RDWR | constants.O_CREAT, 0o644)
    return new PieceWriter(file, range, options, async (piece) => { await this.recordPiece(taskId, piece) })
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
          r.resolve()
        }
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
    let file: FileHandle
    try {
      file = await open(this.dataPath(taskId), constants.O_RDONLY)
    } catch (err) {
      throw new StoreReadError(`cannot open the data of task ${taskId}: ${(err as Error).message}`, { cause: err })
    }
    return {
      async readFully (buffer, position, length = buffer.byteLength) {
        let done = 0
        // bounded: every pass reads at least one byte, or throws
        while (done < length) {
          const { bytesRead } = await file.read(buffer, done, length - done, position + done)
          if (bytesRead === 0) {
            throw new StoreReadError(`data of task ${taskId} ends at ${position + done}, before ${position + length}`)
          }
          done += bytesRead
        }
      },
      async close () {
        await file.close()
      }
    }
  }

  /** Forgets a task and deletes its data. */
  async deleteTask (taskId: string): Promise<void> {
    const prefix = piecePrefix(taskId)
    await this.meta.clear({ gte: prefix, lt: `${prefix}~` })
    await this.meta.del(taskKey(taskId))
    await rm(this.dataPath(taskId), { force: true })
  }

  /** Drops a task's piece records (its data file stays, to be overwritten). */
  async clearPieces (taskId: string): Promise<void> {
    const prefix = piecePrefix(taskId)
    await this.meta.clear({ gte: prefix, lt: `${prefix}~` })
  }
}
