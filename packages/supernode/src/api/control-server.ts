import {
  CONTROL_PROTOCOL, controlRequestSchema, FramedStream, HttpError, MAX_CONTROL_FRAME, ProtocolError,
  type ComponentLogger, type ControlRequest, type ControlResponse, type Logger
} from '@shoal/core'
import type { ControlApi } from './control-api.ts'
import type { PreheatControl } from '../preheat/preheat-routes.ts'
import type { Connection, Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'

export interface ControlServerInit {
  /** Longest one call may take, long polls included. @default 90000 ms */
  callTimeout?: number
  /** Calls open at once on one connection (one daemon; each download holds a long poll). @default 4096 */
  maxInboundStreams?: number
}

export interface ControlServerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  api: ControlApi
  /** Preheat jobs for cluster members (`preheat`, `preheat-status`). @default none: those ops answer 404 */
  preheat?: PreheatControl
  logger: ComponentLogger
}

/**
 * Serves the control plane (`/shoal/control/1.0.0`) to cluster members. Only nodes
 * holding the cluster key get a connection at all; the caller's peer id comes from
 * that connection, so every call is attributed to the peer that made it.
 */
export class ControlServer {
  private readonly components: ControlServerComponents
  private readonly log: Logger
  private readonly callTimeout: number
  private readonly maxInboundStreams: number
  private readonly controller = new AbortController()

  constructor (components: ControlServerComponents, init: ControlServerInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:supernode:control')
    this.callTimeout = init.callTimeout ?? 90_000
    this.maxInboundStreams = init.maxInboundStreams ?? 4096
  }

  async start (): Promise<void> {
    await this.components.libp2p.handle(CONTROL_PROTOCOL, this.handle, { maxInboundStreams: this.maxInboundStreams })
  }

  async stop (): Promise<void> {
    this.controller.abort(new Error('supernode stopping'))
    await this.components.libp2p.unhandle(CONTROL_PROTOCOL)
  }

  private readonly handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const signal = AbortSignal.any([AbortSignal.timeout(this.callTimeout), this.controller.signal])
    const framed = new FramedStream(stream, { maxFrameLength: MAX_CONTROL_FRAME })
    const caller = connection.remotePeer.toString()
    try {
      let response: ControlResponse
      try {
        const request = await framed.readJson(controlRequestSchema, { signal })
        response = { status: 200, body: await this.dispatch(request, caller, signal) }
      } catch (err) {
        response = this.errorResponse(err, caller)
      }
      await framed.writeJson(response, { signal })
      await stream.close({ signal })
    } catch (err) {
      this.log.debug({ err, caller }, 'control call cut')
      stream.abort(err as Error)
    } finally {
      framed.release()
    }
  }

  private async dispatch (request: ControlRequest, caller: string, signal: AbortSignal): Promise<unknown> {
    const { api } = this.components
    const ctx = { caller, signal }
    switch (request.op) {
      case 'register': return api.register(request.body, ctx)
      case 'schedule':
        if (request.taskId == null) {
          throw new HttpError(400, 'BAD_REQUEST', 'schedule needs a taskId')
        }
        return api.schedule(request.taskId, request.body, ctx)
      case 'announce': return api.announce(request.body, ctx)
      case 'leave': return api.leave(request.body, ctx)
      case 'preheat':
      case 'preheat-status': {
        const { preheat } = this.components
        if (preheat == null) {
          throw new HttpError(404, 'NOT_FOUND', 'this supernode runs no preheat jobs')
        }
        this.log.info({ caller, op: request.op }, 'preheat call from a cluster member')
        return request.op === 'preheat' ? preheat.create(request.body) : preheat.get(request.body)
      }
    }
  }

  private errorResponse (err: unknown, caller: string): ControlResponse {
    if (err instanceof HttpError) {
      this.log.debug({ status: err.status, code: err.code, caller }, err.message)
      return { status: err.status, body: { error: { code: err.code, message: err.message } } }
    }
    if (err instanceof ProtocolError) {
      return { status: 400, body: { error: { code: 'BAD_REQUEST', message: err.message } } }
    }
    this.log.error({ err, caller }, 'control call failed')
    return { status: 500, body: { error: { code: 'INTERNAL', message: 'internal error' } } }
  }
}
