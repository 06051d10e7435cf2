import { constants, createReadStream, type ReadStream } from 'node:fs'
import { mkdir, open, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
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

const taskKey = (taskId: string): string => `task!${taskId}`
const piecePrefix = (taskId: string): string => `piece!${taskId}!`
const pieceKey = (taskId: string, num: number): string => `${piecePrefix(taskId)}${String(num).padStart(PIECE_NUM_WIDTH, '0')}`

/**
 * Pieces on disk: one sparse data file per task, written at each piece's offset, and a
 * LevelDB index of tasks and verified pieces.
 *
 * A piece is recorded only after its bytes are synced to disk and its digest checked,
 * so after a crash every recorded piece is whole; a piece cut off mid-write was never
 * recorded and is fetched again.
 */
export class PieceStore {
  private readonly dataDir: string
  private readonly log: Logger
  private db?: Level<string, unknown>

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
    return new PieceWriter(file, range, options, async (piece) => {
      await this.meta.put(pieceKey(taskId, piece.num), piece, { sync: true })
    })
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

  /** Reads a byte range of a task's content (`end` exclusive). */
  createReadStream (taskId: string, start: number, end: number, options: { highWaterMark?: number } = {}): ReadStream {
    return createReadStream(this.dataPath(taskId), { start, end: end - 1, highWaterMark: options.highWaterMark ?? 256 * 1024 })
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
