import { ShoalError } from '@shoal/core'

/** A task's declared length, at its piece size, means more pieces than the supernode schedules. */
export class TooManyPiecesError extends ShoalError {
  override name = 'TooManyPiecesError'
  override readonly code = 'ERR_TOO_MANY_PIECES'
}
