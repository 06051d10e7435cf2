/**
 * `/shoal/control/1.0.0`: the daemon↔supernode control plane, one call per libp2p
 * stream. It runs inside the cluster's private network and Noise, so only cluster
 * members can speak it, nothing in it (registry credentials included) crosses the
 * network in clear, and the supernode knows which peer is calling from the
 * connection itself, not from anything the caller claims.
 *
 * The caller writes one length-prefixed JSON {@link ControlRequest}; the supernode
 * answers with one {@link ControlResponse} and closes. Statuses mean what HTTP's do
 * (200, 400, 403, 404, 503, 504); an error body is `{ error: { code, message } }`.
 * The bodies are the messages of `api.ts`.
 */
import { z } from 'zod'

export const CONTROL_PROTOCOL = '/shoal/control/1.0.0'

/** Largest request or response either side accepts (a schedule report may list 1024 results). */
export const MAX_CONTROL_FRAME = 1024 * 1024

/**
 * `preheat` (body: the `POST /api/v1/preheat` request) answers `{ id, state }`;
 * `preheat-status` (body: `{ id }`) answers the job: cluster members preheat without the
 * operator's token, the cluster key being their credential.
 */
export const CONTROL_OPS = ['register', 'schedule', 'announce', 'leave', 'preheat', 'preheat-status'] as const
export type ControlOp = typeof CONTROL_OPS[number]

export const controlRequestSchema = z.object({
  op: z.enum(CONTROL_OPS),
  /** `schedule` only: the task asked about */
  taskId: z.string().regex(/^[a-f0-9]{64}$/, 'must be 64 hex digits').optional(),
  body: z.unknown()
})
export type ControlRequest = z.infer<typeof controlRequestSchema>

export const controlResponseSchema = z.object({
  status: z.number().int().min(100).max(599),
  body: z.unknown()
})
export type ControlResponse = z.infer<typeof controlResponseSchema>
