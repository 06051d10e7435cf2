import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import {
  API_PREFIX, apiErrorSchema, controlCall, peerAddressSchema, registerTaskResponseSchema, scheduleResponseSchema, SupernodeRequestError,
  SupernodeUnavailableError, TaskFailedError, type AnnounceRequest, type ControlRequest, type PeerInfo, type RegisterTaskRequest, type RegisterTaskResponse, type ScheduleRequest,
  type ScheduleResponse
} from '@shoal/core'
import { setTimeout as sleep } from 'node:timers/promises'
import { request, type Dispatcher } from 'undici'
import type { Libp2p } from 'libp2p'
import type { z } from 'zod'

/** Largest `/api/v1/status` answer read when finding the supernode. */
const MAX_STATUS_BODY = 64 * 1024

/** First pause between tries of a control call; it grows with each try. */
const RETRY_DELAY = 250

export interface SupernodeClientInit {
  /**
   * Where the supernode is: its libp2p multiaddr (`/ip4/10.0.0.5/tcp/8003`, optionally
   * with `/p2p/<peer id>` to pin its identity), or its HTTP address
   * (`http://supernode:8002`), from whose open `/api/v1/status` the daemon learns
   * the peer id and libp2p addresses.
   */
  address: string
  /** Per-call timeout on top of any long-poll wait, retries included. @default 15000 ms */
  timeout?: number
  /** Tries per call when the supernode cannot be reached. @default 3 */
  attempts?: number
}

export interface SupernodeClientComponents {
  /** The daemon's libp2p node: the control plane runs over it, inside the cluster key and Noise. */
  libp2p: Pick<Libp2p, 'dialProtocol'>
  /** For discovery through an HTTP address only. */
  dispatcher: Dispatcher
}

/**
 * The daemon's side of the supernode's control plane (`/shoal/control/1.0.0`).
 * Answers are validated against the shared schemas; network trouble and 5xx become
 * {@link SupernodeUnavailableError} (worth falling back to the origin), 4xx become
 * {@link SupernodeRequestError}.
 */
export class SupernodeClient {
  /** As configured, for logs */
  readonly address: string
  private readonly components: SupernodeClientComponents
  private readonly timeout: number
  private readonly attempts: number
  /** The supernode's libp2p addresses, once known */
  private resolved?: Multiaddr[]

  constructor (components: SupernodeClientComponents, init: SupernodeClientInit) {
    this.components = components
    this.address = init.address
    this.timeout = init.timeout ?? 15_000
    this.attempts = init.attempts ?? 3
    if (init.address.startsWith('/')) {
      this.resolved = [multiaddr(init.address)]
    }
  }

  async register (body: RegisterTaskRequest, options: { signal?: AbortSignal } = {}): Promise<RegisterTaskResponse> {
    // registration waits for the source to answer, which the supernode bounds itself
    return this.call({ op: 'register', body }, registerTaskResponseSchema, this.timeout + 40_000, options.signal)
  }

  async schedule (taskId: string, body: ScheduleRequest, options: { signal?: AbortSignal } = {}): Promise<ScheduleResponse> {
    return this.call({ op: 'schedule', taskId, body }, scheduleResponseSchema, this.timeout + (body.waitMs ?? 0), options.signal)
  }

  /** Tells the supernode this peer is alive, where to reach it, and (optionally) which complete tasks it holds. */
  async announce (peer: PeerInfo | AnnounceRequest, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.call({ op: 'announce', body: peer }, null, this.timeout, options.signal)
  }

  /** Tells the supernode this peer is going away, so nobody is sent to it. */
  async leave (peerId: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.call({ op: 'leave', body: { peerId } }, null, this.timeout, options.signal)
    } catch (err) {
      if (!(err instanceof SupernodeRequestError && err.statusCode === 404)) {
        throw err
      }
    }
  }

  private async call<T> (req: ControlRequest, schema: z.ZodType<T> | null, timeout: number, signal?: AbortSignal): Promise<T> {
    const bounded = AbortSignal.any([AbortSignal.timeout(timeout), ...(signal != null ? [signal] : [])])
    const what = req.op
    let answer
    // a dial or stream can fail on a loaded host or a connection being replaced; every
    // call is safe to repeat (registering again changes nothing; a report sent twice at
    // most counts a transfer twice in a peer's health), so a few quick retries come
    // before calling the supernode unavailable
    for (let attempt = 1; ; attempt++) {
      try {
        const to = await this.addresses(bounded)
        answer = await controlCall(this.components, to, req, { signal: bounded })
        break
      } catch (err) {
        signal?.throwIfAborted()
        // found again on the next call: the supernode may have moved or restarted
        if (!this.address.startsWith('/')) {
          this.resolved = undefined
        }
        if (attempt >= this.attempts || bounded.aborted) {
          throw new SupernodeUnavailableError(`supernode ${this.address} unreachable for ${what}: ${(err as Error).message}`, { cause: err })
        }
        await sleep(RETRY_DELAY * attempt, bounded).catch(() => {})
      }
    }

    if (answer.status >= 400) {
      const parsed = apiErrorSchema.safeParse(answer.body)
      const message = parsed.success ? `${parsed.data.error.code}: ${parsed.data.error.message}` : `status ${answer.status}`
      if (answer.status === 504 && parsed.success && parsed.data.error.code === 'SOURCE_TIMEOUT') {
        // the source was slow, not the supernode: no reason to skip the supernode, and
        // the origin may answer this daemon in time
        throw new TaskFailedError(`supernode ${this.address}: ${message}`, { sourceStatus: 504, reason: 'ERR_SOURCE_TIMEOUT' })
      }
      if (answer.status >= 500) {
        throw new SupernodeUnavailableError(`supernode ${this.address} failed ${what}: ${message}`)
      }
      throw new SupernodeRequestError(answer.status, `supernode ${this.address} refused ${what}: ${message}`)
    }

    if (schema == null) {
      return undefined as T
    }
    const parsed = schema.safeParse(answer.body)
    if (!parsed.success) {
      throw new SupernodeUnavailableError(`supernode ${this.address} sent an answer this daemon does not understand to ${what}: ${parsed.error.issues[0]?.message ?? ''}`)
    }
    return parsed.data
  }

  /** The supernode's libp2p addresses: as configured, or learned from its HTTP status. */
  private async addresses (signal: AbortSignal): Promise<Multiaddr[]> {
    if (this.resolved != null) {
      return this.resolved
    }
    const res = await request(`${this.address.replace(/\/+$/, '')}${API_PREFIX}/status`, { signal, dispatcher: this.components.dispatcher })
    const text = await readBounded(res.body, MAX_STATUS_BODY)
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    const parsed = peerAddressSchema.safeParse(json)
    if (res.statusCode !== 200 || !parsed.success) {
      throw new Error(`${this.address}${API_PREFIX}/status answered ${res.statusCode} without a peer id and addresses`)
    }
    const { peerId, addrs } = parsed.data
    this.resolved = addrs.map(a => a.includes('/p2p/') ? multiaddr(a) : multiaddr(a).encapsulate(`/p2p/${peerId}`))
    return this.resolved
  }
}

/** Reads a body as text, up to `limit` bytes. */
async function readBounded (body: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size > limit) {
      throw new Error(`answer over ${limit} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks).toString('utf8')
}
