import { constants } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { StoreReadError } from '../errors.ts'

/** Reads a task's data file; see {@link PieceStore.openReader}. */
export interface TaskReader {
  /**
   * Fills `buffer` (or its first `length` bytes) from `position`.
   *
   * @throws {StoreReadError} when the file ends first: the data is not what the index says
   */
  readFully(buffer: Uint8Array, position: number, length?: number): Promise<void>
  /**
   * Checks that the data file reaches `end`, before anything is promised to a reader.
   *
   * @throws {StoreReadError} when it is shorter
   */
  ensure(end: number): Promise<void>
  close(): Promise<void>
}

/**
 * Opens a task's data file for reading. `pin` marks the task in use; the reader
 * releases it on close.
 *
 * @throws {StoreReadError} when the file cannot be opened (it is gone)
 */
export async function openTaskReader (path: string, taskId: string, pin: () => () => void): Promise<TaskReader> {
  let file: FileHandle
  try {
    file = await open(path, constants.O_RDONLY)
  } catch (err) {
    throw new StoreReadError(`cannot open the data of task ${taskId}: ${(err as Error).message}`, { cause: err })
  }
  const release = pin()
  return {
    async ensure (end) {
      const { size } = await file.stat()
      if (size < end) {
        throw new StoreReadError(`data of task ${taskId} ends at ${size}, before ${end}`)
      }
    },
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
      release()
      await file.close()
    }
  }
}
