/**
 * `/shoal/piece/1.0.0`: one piece per libp2p stream.
 *
 * The requester writes one length-prefixed JSON {@link PieceRequest}. The holder answers
 * with one length-prefixed JSON {@link PieceResponseHeader}; when it is `ok`, exactly
 * `length` bytes of piece data follow as length-prefixed frames of at most
 * {@link MAX_DATA_FRAME} bytes, and the holder closes its side.
 */
import { z } from 'zod'
import { isDigest } from '../digest.ts'
import { isTaskId } from '../task-id.ts'

export const PIECE_PROTOCOL = '/shoal/piece/1.0.0'

/** Largest control message (request or header) either side accepts. */
export const MAX_CONTROL_MESSAGE = 16 * 1024

/** Largest data frame either side sends or accepts. */
export const MAX_DATA_FRAME = 256 * 1024

/**
 * The range is part of the request so a holder that cut the content differently (a
 * different piece size) answers `NOT_FOUND` instead of sending the wrong bytes.
 */
export const pieceRequestSchema = z.object({
  taskId: z.string().refine(isTaskId, 'must be 64 hex digits'),
  num: z.number().int().nonnegative(),
  offset: z.number().int().nonnegative(),
  length: z.number().int().positive()
})
export type PieceRequest = z.infer<typeof pieceRequestSchema>

export const PIECE_ERROR_CODES = ['NOT_FOUND', 'BUSY', 'BAD_REQUEST', 'INTERNAL'] as const

export const pieceResponseHeaderSchema = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('ok'),
    length: z.number().int().positive(),
    digest: z.string().refine(isDigest)
  }),
  z.object({
    status: z.literal('error'),
    code: z.enum(PIECE_ERROR_CODES),
    message: z.string().max(1024)
  })
])
export type PieceResponseHeader = z.infer<typeof pieceResponseHeaderSchema>
