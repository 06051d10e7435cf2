/**
 * The supernode's HTTP API, as daemons speak it (JSON under `/api/v1`). Each message is
 * declared once here; the server validates requests and the client validates answers
 * against the same schemas.
 */
import { z } from 'zod'
import { isDigest } from '../digest.ts'
import { isTaskId } from '../task-id.ts'

export const API_PREFIX = '/api/v1'

const peerIdSchema = z.string().min(1).max(128).regex(/^[1-9A-HJ-NP-Za-km-z]+$/, 'must be a base58 libp2p peer id')
const taskIdSchema = z.string().refine(isTaskId, 'must be 64 hex digits')
const multiaddrList = z.array(z.string().min(1).max(512).startsWith('/')).max(32)

/** Longest `idc` label. */
export const MAX_IDC_LENGTH = 128
/** Longest `location`, and most of its `|`-separated parts. */
export const MAX_LOCATION_LENGTH = 512
export const MAX_LOCATION_PARTS = 16
export const idcSchema = z.string().min(1).max(MAX_IDC_LENGTH).regex(/^[^|\s]+$/, 'must be one word without | or spaces')
export const locationSchema = z.string().min(1).max(MAX_LOCATION_LENGTH)
  .refine(l => l.split('|').length <= MAX_LOCATION_PARTS && l.split('|').every(p => p.length > 0 && !/\s/.test(p)), `must be up to ${MAX_LOCATION_PARTS} non-empty |-separated parts without spaces, wide to narrow (eu|fra|rack7)`)

/** How a peer can be reached over libp2p. */
export const peerAddressSchema = z.object({
  peerId: peerIdSchema,
  addrs: multiaddrList
})
export type PeerAddress = z.infer<typeof peerAddressSchema>

/**
 * A daemon introducing itself: when it registers for a task, and every minute on
 * `PUT /api/v1/peers/:peerId` so the supernode keeps offering it as a source.
 */
export const peerInfoSchema = peerAddressSchema.extend({
  hostname: z.string().min(1).max(255),
  /**
   * The data centre the peer is in (`--idc`). Peers in the caller's IDC are chosen as
   * parents first. Older daemons send none; older supernodes ignore it.
   */
  idc: idcSchema.optional(),
  /**
   * Where the peer is, `|`-separated from wide to narrow (`--location`, such as
   * `eu|fra|rack7`): after the IDC, parents sharing the longest prefix go first.
   */
  location: locationSchema.optional()
})
export type PeerInfo = z.infer<typeof peerInfoSchema>

/** Most complete tasks a daemon reports in one announce. */
export const MAX_ANNOUNCED_TASKS = 4096

/**
 * The announce (on connect, then every heartbeat): the peer, and optionally the
 * complete tasks it holds (most recently used first, at most {@link MAX_ANNOUNCED_TASKS}),
 * so a supernode that restarted, or that a task moved to, offers it as a source again.
 * Older daemons send no `tasks`; older supernodes ignore it.
 */
export const announceRequestSchema = peerInfoSchema.extend({
  tasks: z.array(taskIdSchema).max(MAX_ANNOUNCED_TASKS).optional()
})
export type AnnounceRequest = z.infer<typeof announceRequestSchema>

export const TASK_STATES = ['running', 'success', 'failed'] as const
export type TaskState = typeof TASK_STATES[number]

/** `POST /api/v1/tasks`: "I want this content". */
export const registerTaskRequestSchema = z.object({
  url: z.string().url().refine(u => /^https?:/.test(u), 'must be an http(s) URL').max(8192),
  digest: z.string().refine(isDigest, 'must be an OCI digest such as sha256:<64 hex digits>').optional(),
  /** Headers the source needs, such as Authorization; forwarded on the source fetch only. */
  headers: z.record(z.string().max(256), z.string().max(16384)).optional(),
  peer: peerInfoSchema
})
export type RegisterTaskRequest = z.infer<typeof registerTaskRequestSchema>

export const taskErrorSchema = z.object({
  code: z.string(),
  message: z.string(),
  /** The HTTP status the source answered with, when the source failed */
  sourceStatus: z.number().int().optional()
})
export type TaskError = z.infer<typeof taskErrorSchema>

export const registerTaskResponseSchema = z.object({
  taskId: taskIdSchema,
  state: z.enum(TASK_STATES),
  /** null until the source has said (it may stream without a length) */
  contentLength: z.number().int().nonnegative().nullable(),
  pieceSize: z.number().int().positive(),
  /** The supernode itself, as a piece source */
  supernode: peerAddressSchema,
  error: taskErrorSchema.optional()
})
export type RegisterTaskResponse = z.infer<typeof registerTaskResponseSchema>

export const pieceResultSchema = z.object({
  num: z.number().int().nonnegative(),
  ok: z.boolean(),
  /** Peer id of the source tried */
  source: peerIdSchema,
  /** Bytes received, when ok */
  bytes: z.number().int().nonnegative().optional(),
  /** How long the transfer took, when ok: the scheduler ranks slow parents down by it */
  ms: z.number().nonnegative().max(3_600_000).optional(),
  /** Error code when not ok */
  code: z.string().max(64).optional()
})
export type PieceResult = z.infer<typeof pieceResultSchema>

/**
 * `POST /api/v1/tasks/:taskId/schedule`: report what happened since the last call and
 * ask for up to `limit` more pieces. When nothing is ready the supernode holds the
 * request for up to `waitMs` (a long poll) instead of making the daemon spin.
 */
export const scheduleRequestSchema = z.object({
  peerId: peerIdSchema,
  /** Pieces this peer is fetching now; they are not handed out again */
  running: z.array(z.number().int().nonnegative()).max(1024).default([]),
  results: z.array(pieceResultSchema).max(1024).default([]),
  limit: z.number().int().min(0).max(64).default(4),
  waitMs: z.number().int().min(0).max(30_000).default(0)
})
export type ScheduleRequest = z.input<typeof scheduleRequestSchema>

export const pieceSourceSchema = peerAddressSchema.extend({
  kind: z.enum(['supernode', 'peer']),
  /** The source's IDC and location as it declared them, so the fetcher can count cross-IDC bytes. Absent from older supernodes. */
  idc: idcSchema.optional(),
  location: locationSchema.optional()
})
export type PieceSource = z.infer<typeof pieceSourceSchema>

/** One piece to fetch, with where to fetch it from, best source first. */
export const pieceAssignmentSchema = z.object({
  num: z.number().int().nonnegative(),
  offset: z.number().int().nonnegative(),
  length: z.number().int().positive(),
  digest: z.string().refine(isDigest),
  sources: z.array(pieceSourceSchema).min(1)
})
export type PieceAssignment = z.infer<typeof pieceAssignmentSchema>

export const scheduleResponseSchema = z.object({
  state: z.enum(TASK_STATES),
  contentLength: z.number().int().nonnegative().nullable(),
  pieceSize: z.number().int().positive(),
  /** Known once contentLength is */
  pieceCount: z.number().int().nonnegative().nullable(),
  assignments: z.array(pieceAssignmentSchema),
  error: taskErrorSchema.optional()
})
export type ScheduleResponse = z.infer<typeof scheduleResponseSchema>

export const apiErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string() })
})
