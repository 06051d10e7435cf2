import {
  API_PREFIX, apiErrorSchema, registerTaskResponseSchema, scheduleResponseSchema, SupernodeRequestError, SupernodeUnavailableError,
  type PeerInfo, type RegisterTaskRequest, type RegisterTaskResponse, type ScheduleRequest, type ScheduleResponse
} from '@shoal/core'
import { request, type Dispatcher } from 'undici'
import type { z } from 'zod'

export interface SupernodeClientInit {
  /** Supernode base URL, such as http://supernode:8002 */
  url: string
  /** Per-request timeout on top of any long-poll wait. @default 15000 ms */
  timeout?: number
}

export interface SupernodeClientComponents {
  dispatcher: Dispatcher
}

/**
 * The daemon's side of the supernode HTTP API. Answers are validated against the
 * shared schemas; network errors and 5xx become {@link SupernodeUnavailableError}
 * (worth falling back to the origin), 4xx become {@link SupernodeRequestError}.
 */
export class SupernodeClient {
  readonly url: string
  private readonly dispatcher: Dispatcher
  private readonly timeout: number

  constructor (components: SupernodeClientComponents, init: SupernodeClientInit) {
    this.dispatcher = components.dispatcher
    this.url = init.url.replace(/\/+$/, '')
    this.timeout = init.timeout ?? 15_000
  }

  async register (body: RegisterTaskRequest, options: { signal?: AbortSignal } = {}): Promise<RegisterTaskResponse> {
    // registration waits for the source to answer, which the supernode bounds itself
    return this.call('POST', `${API_PREFIX}/tasks`, body, registerTaskResponseSchema, this.timeout + 40_000, options.signal)
  }

  async schedule (taskId: string, body: ScheduleRequest, options: { signal?: AbortSignal } = {}): Promise<ScheduleResponse> {
    return this.call('POST', `${API_PREFIX}/tasks/${taskId}/schedule`, body, scheduleResponseSchema, this.timeout + (body.waitMs ?? 0), options.signal)
  }

  /** Tells the supernode this peer is alive and where to reach it. */
  async announce (peer: PeerInfo, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.call('PUT', `${API_PREFIX}/peers/${peer.peerId}`, peer, null, this.timeout, options.signal)
  }

  /** Tells the supernode this peer is going away, so nobody is sent to it. */
  async leave (peerId: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.call('DELETE', `${API_PREFIX}/peers/${peerId}`, undefined, null, this.timeout, options.signal)
    } catch (err) {
      if (!(err instanceof SupernodeRequestError && err.statusCode === 404)) {
        throw err
      }
    }
  }

  private async call<T> (method: 'POST' | 'PUT' | 'DELETE', path: string, body: unknown, schema: z.ZodType<T> | null, timeout: number, signal?: AbortSignal): Promise<T> {
    const signals = [AbortSignal.timeout(timeout), ...(signal != null ? [signal] : [])]
    let res: Dispatcher.ResponseData
    try {
      res = await request(`${this.url}${path}`, {
        method,
        ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
        signal: AbortSignal.any(signals),
        dispatcher: this.dispatcher
      })
    } catch (err) {
      signal?.throwIfAborted()
      throw new SupernodeUnavailableError(`supernode ${this.url} unreachable: ${(err as Error).message}`)
    }

    let json: unknown
    try {
      json = await res.body.json()
    } catch (err) {
      signal?.throwIfAborted()
      throw new SupernodeUnavailableError(`supernode ${this.url} sent a malformed answer to ${method} ${path} (${res.statusCode}): ${(err as Error).message}`)
    }

    if (res.statusCode >= 400) {
      const parsed = apiErrorSchema.safeParse(json)
      const message = parsed.success ? `${parsed.data.error.code}: ${parsed.data.error.message}` : `status ${res.statusCode}`
      if (res.statusCode >= 500) {
        throw new SupernodeUnavailableError(`supernode ${this.url} failed ${method} ${path}: ${message}`)
      }
      throw new SupernodeRequestError(res.statusCode, `supernode ${this.url} refused ${method} ${path}: ${message}`)
    }

    if (schema == null) {
      return undefined as T
    }
    const parsed = schema.safeParse(json)
    if (!parsed.success) {
      throw new SupernodeUnavailableError(`supernode ${this.url} sent an answer this daemon does not understand to ${method} ${path}: ${parsed.error.issues[0]?.message ?? ''}`)
    }
    return parsed.data
  }
}
