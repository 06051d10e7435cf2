import { Counter } from 'prom-client'
import { MAX_CONTROL_MESSAGE, MAX_DATA_FRAME, PIECE_PROTOCOL, pieceRequestSchema, type PieceResponseHeader } from '../protocol/piece-protocol.ts'
import { errorCode, ProtocolError, StoreReadError } from '../errors.ts'
import { FramedStream } from './framed-stream.ts'
import type { ComponentLogger, Logger } from '../logger.ts'
import type { PieceStore } from '../store/piece-store.ts'
import type { TaskReader } from '../store/task-reader.ts'
import type { RateLimit } from '../rate/token-bucket.ts'
import type { Connection, Stream } from '@libp2p/interface'
import type { Libp2p } from 'libp2p'
import type { Registry } from 'prom-client'

export interface PieceServerInit {
  /** Metric name prefix, such as `shoal_dfget`. */
  metricPrefix: string
  /** Pieces served at once; further requests are answered `BUSY`. @default 16 */
  maxConcurrentUploads?: number
  /**
   * Longest one piece may take to serve before the stream is cut; time spent waiting
   * for the upload limit's tokens does not count. @default 120000 ms
   */
  pieceTimeout?: number
}

export interface PieceServerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>
  store: Pick<PieceStore, 'getPiece' | 'openReader' | 'checkTask'>
  logger: ComponentLogger
  metrics: Registry
  /** This host's upload limit, shared by every piece served; waited on before each frame. @default none */
  uploadLimit?: RateLimit
}

/**
 * Serves the pieces in a {@link PieceStore} to other peers over `/shoal/piece/1.0.0`.
 * Only recorded (synced and verified) pieces are served.
 */
export class PieceServer {
  private readonly components: PieceServerComponents
  private readonly log: Logger
  private readonly maxConcurrentUploads: number
  private readonly pieceTimeout: number
  private readonly uploadBytes: Counter
  private readonly uploadPieces: Counter<'result'>
  private active = 0

  constructor (components: PieceServerComponents, init: PieceServerInit) {
    this.components = components
    this.log = components.logger.forComponent('shoal:piece-server')
    this.maxConcurrentUploads = init.maxConcurrentUploads ?? 16
    this.pieceTimeout = init.pieceTimeout ?? 120_000
    this.uploadBytes = new Counter({
      name: `${init.metricPrefix}_upload_bytes_total`,
      help: 'Piece bytes sent to other peers',
      registers: [components.metrics]
    })
    this.uploadPieces = new Counter({
      name: `${init.metricPrefix}_upload_pieces_total`,
      help: 'Piece requests answered, by result (ok, not_found, busy, bad_request, error)',
      labelNames: ['result'],
      registers: [components.metrics]
    })
  }

  async start (): Promise<void> {
    await this.components.libp2p.handle(PIECE_PROTOCOL, this.handle, {
      maxInboundStreams: this.maxConcurrentUploads * 4,
      // this node's own piece fetches to one peer: libp2p's default (64 per connection)
      // would fail the 65th when many downloads draw on the same peer or supernode
      maxOutboundStreams: 1024
    })
  }

  async stop (): Promise<void> {
    await this.components.libp2p.unhandle(PIECE_PROTOCOL)
  }

  private readonly handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const deadline = new Deadline(this.pieceTimeout)
    const signal = deadline.signal
    const framed = new FramedStream(stream, { maxFrameLength: MAX_CONTROL_MESSAGE })
    const remote = connection.remotePeer.toString()
    let result = 'error'
    let counted = false
    let requested: string | undefined

    try {
      let request
      try {
        request = await framed.readJson(pieceRequestSchema, { signal })
      } catch (err) {
        if (err instanceof ProtocolError) {
          result = 'bad_request'
          await this.answer(framed, { status: 'error', code: 'BAD_REQUEST', message: err.message }, signal)
          return
        }
        throw err
      }

      requested = request.taskId
      if (this.active >= this.maxConcurrentUploads) {
        result = 'busy'
        await this.answer(framed, { status: 'error', code: 'BUSY', message: `all ${this.maxConcurrentUploads} upload slots are taken` }, signal)
        return
      }
      this.active++
      counted = true

      const piece = await this.components.store.getPiece(request.taskId, request.num)
      if (piece == null || piece.offset !== request.offset || piece.length !== request.length) {
        result = 'not_found'
        await this.answer(framed, { status: 'error', code: 'NOT_FOUND', message: `no piece ${request.num} of task ${request.taskId}` }, signal)
        return
      }

      let reader: TaskReader | undefined
      try {
        reader = await this.components.store.openReader(request.taskId)
        await reader.ensure(piece.offset + piece.length)
      } catch (err) {
        await reader?.close()
        if (!(err instanceof StoreReadError)) {
          throw err
        }
        // the index says more than the disk holds: drop what is not there (the owner of
        // the task hears of it and stops offering those pieces), and say NOT_FOUND, so
        // the requester moves on instead of retrying a cut stream
        this.log.warn({ err, taskId: request.taskId }, 'a recorded piece is not in its data file')
        await this.dropDamaged(request.taskId)
        result = 'not_found'
        await this.answer(framed, { status: 'error', code: 'NOT_FOUND', message: `no data for piece ${request.num} of task ${request.taskId}` }, signal)
        return
      }
      try {
        await framed.writeJson({ status: 'ok', length: piece.length, digest: piece.digest } satisfies PieceResponseHeader, { signal })
        // bounded by the piece length; each frame is a fresh buffer because the muxer may
        // hold on to it until the connection drains
        for (let sent = 0; sent < piece.length;) {
          const frame = Buffer.allocUnsafe(Math.min(MAX_DATA_FRAME, piece.length - sent))
          if (this.components.uploadLimit != null) {
            // backpressure, not loss: the frame is read and sent only once the limit allows
            deadline.pause()
            try {
              await this.components.uploadLimit.take(frame.byteLength, { signal })
            } finally {
              deadline.resume()
            }
          }
          await reader.readFully(frame, piece.offset + sent)
          await framed.writeFrame(frame, { signal })
          sent += frame.byteLength
          this.uploadBytes.inc(frame.byteLength)
        }
      } finally {
        await reader.close()
      }
      await stream.close({ signal })
      result = 'ok'
      this.log.debug({ taskId: request.taskId, num: request.num, peer: remote }, 'served piece')
    } catch (err) {
      if (err instanceof StoreReadError && requested != null) {
        await this.dropDamaged(requested)
      }
      this.log.warn({ err, code: errorCode(err), peer: remote }, 'serving a piece failed')
      stream.abort(err as Error)
    } finally {
      deadline.clear()
      if (counted) {
        this.active--
      }
      framed.release()
      this.uploadPieces.inc({ result })
    }
  }

  private async dropDamaged (taskId: string): Promise<void> {
    try {
      await this.components.store.checkTask(taskId)
    } catch (err) {
      this.log.error({ err, taskId }, 'cannot check a damaged task')
    }
  }

  private async answer (framed: FramedStream, header: PieceResponseHeader, signal: AbortSignal): Promise<void> {
    await framed.writeJson(header, { signal })
    await framed.stream.close({ signal })
  }
}

/** A timeout that can be paused (while waiting for the rate limit), aborting `signal` when it runs out. */
class Deadline {
  private readonly controller = new AbortController()
  private remaining: number
  private startedAt = 0
  private timer?: NodeJS.Timeout

  constructor (ms: number) {
    this.remaining = ms
    this.resume()
  }

  get signal (): AbortSignal {
    return this.controller.signal
  }

  pause (): void {
    if (this.timer != null) {
      clearTimeout(this.timer)
      this.timer = undefined
      this.remaining -= performance.now() - this.startedAt
    }
  }

  resume (): void {
    if (this.timer == null && !this.controller.signal.aborted) {
      this.startedAt = performance.now()
      this.timer = setTimeout(() => {
        this.controller.abort(new DOMException('The operation timed out.', 'TimeoutError'))
      }, Math.max(0, this.remaining))
      // like AbortSignal.timeout: a pending piece does not keep the process alive
      this.timer.unref()
    }
  }

  clear (): void {
    clearTimeout(this.timer)
    this.timer = undefined
  }
}
