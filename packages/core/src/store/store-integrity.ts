import { stat } from 'node:fs/promises'
import type { StoredPiece } from './piece-writer.ts'

/**
 * The recorded pieces whose bytes are not all in the data file at `path`: all of them
 * when the file is gone, those ending past its end when it is short. The index says a
 * piece is on disk; this is what a reader would find.
 */
export async function damagedPieces (path: string, pieces: StoredPiece[]): Promise<StoredPiece[]> {
  if (pieces.length === 0) {
    return []
  }
  let size: number
  try {
    size = (await stat(path)).size
  } catch {
    return pieces
  }
  return pieces.filter(p => p.offset + p.length > size)
}
