/**
 * Piece math: how a task's content is cut into pieces. Both ends compute ranges from
 * the same (contentLength, pieceSize) pair, so a piece is named by its number alone.
 */

export const MiB = 1024 * 1024

/** Piece size for content up to {@link SMALL_CONTENT_LIMIT}, and when the length is unknown. */
export const DEFAULT_PIECE_SIZE = 4 * MiB

/** Pieces never grow past this, however large the content. */
export const MAX_PIECE_SIZE = 15 * MiB

/** Smallest piece size a supernode may be configured with. */
export const MIN_PIECE_SIZE = 64 * 1024

/** Above this length pieces grow, to keep the piece count (and scheduling chatter) down. */
export const SMALL_CONTENT_LIMIT = 200 * MiB

/**
 * The piece size for content of a given length: 4 MiB up to 200 MiB, then one more MiB
 * per 100 MiB (Dragonfly's rule, which keeps a 1.5 GiB layer near 100 pieces), never
 * above 15 MiB.
 */
export function pieceSizeFor (contentLength: number | null | undefined): number {
  if (contentLength == null || contentLength <= SMALL_CONTENT_LIMIT) {
    return DEFAULT_PIECE_SIZE
  }

  return Math.min((Math.floor(contentLength / (100 * MiB)) + 2) * MiB, MAX_PIECE_SIZE)
}

/** How many pieces content of this length has; empty content has none. */
export function pieceCount (contentLength: number, pieceSize: number): number {
  return Math.ceil(contentLength / pieceSize)
}

export interface PieceRange {
  num: number
  offset: number
  length: number
}

/** Byte range of piece `num`. */
export function pieceRange (num: number, contentLength: number, pieceSize: number): PieceRange {
  const offset = num * pieceSize

  if (!Number.isInteger(num) || num < 0 || offset >= contentLength) {
    throw new RangeError(`piece ${num} is outside content of ${contentLength} bytes`)
  }

  return { num, offset, length: Math.min(pieceSize, contentLength - offset) }
}
