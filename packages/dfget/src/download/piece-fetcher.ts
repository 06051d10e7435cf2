import {
  FramedStream, MAX_DATA_FRAME, PeerBusyError, PIECE_PROTOCOL, PieceDigestMismatchError, PieceLengthMismatchError, PieceNotFoundError,
  pieceResponseHeaderSchema, PieceTimeoutError, ProtocolError, type PieceAssignment, type PieceSource, type PieceStore, type RateLimit, type StoredPiece
} from '@shoal/core'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'

export interface PieceFetcherComponents {
  libp2p: Pick<Libp2p, 'dialProtocol'>
  store: PieceStore
  /**
   * This host's download limit, shared by every piece fetch and the origin: each frame's
   * bytes are taken before the next frame is read, so the source is slowed through the
   * stream's backpressure. Time spent waiting for it is not the source's silence.
   * @default none
   */
  downloadLimit?: RateLimit
}

export interface PieceFetcherInit {
  /**
   * Longest a source may go without sending a byte (the dial and its answer included)
   * before the transfer is dropped as stalled. A slow source that keeps sending is left
   * alone: on a shared, shaped link a piece may take long and still be the best there is.
   * @default 20000 ms
   */
  idleTimeout?: number
  /** Longest one piece may take in all, however steadily it trickles. @default 600000 ms */
  timeout?: number
}

export interface FetchOptions {
  signal?: AbortSignal
  /** Called with the byte count of each chunk as it arrives. */
  onBytes?: (bytes: number) => void
}

/**
 * Fetches one piece from one source over `/shoal/piece/1.0.0` straight into the store,
 * hashing as it writes; the piece is recorded only if it matches the digest the
 * supernode gave for it.
 */
export class PieceFetcher {
  private readonly components: PieceFetcherComponents
  private readonly idleTimeout: number
  private readonly timeout: number

  constructor (components: PieceFetcherComponents, init: PieceFetcherInit = {}) {
    this.components = components
    this.idleTimeout = init.idleTimeout ?? 20_000
    this.timeout = init.timeout ?? 600_000
  }

  /**
   * @throws {PieceNotFoundError | PeerBusyError | ProtocolError | PieceDigestMismatchError | PieceLengthMismatchError | PieceTimeoutError}
   */
  async fetch (taskId: string, piece: PieceAssignment, source: PieceSource, options: FetchOptions = {}): Promise<StoredPiece> {
    const stall = new AbortController()
    let idle: NodeJS.Timeout | undefined
    const armIdle = (): void => {
      clearTimeout(idle)
      idle = setTimeout(() => { stall.abort(new PieceTimeoutError(`${source.kind} ${source.peerId} sent nothing for ${this.idleTimeout} ms of piece ${piece.num}`)) }, this.idleTimeout)
    }
    const limit = setTimeout(() => { stall.abort(new PieceTimeoutError(`${source.kind} ${source.peerId} did not deliver piece ${piece.num} within ${this.timeout} ms`)) }, this.timeout)
    const signal = AbortSignal.any([stall.signal, ...(options.signal != null ? [options.signal] : [])])
    armIdle()

    try {
      const limit = this.components.downloadLimit
      const pace = limit == null
        ? undefined
        : async (bytes: number): Promise<void> => {
          // the idle timer is about the source: it does not run while we hold back
          clearTimeout(idle)
          try {
            await limit.take(bytes, { signal })
          } finally {
            armIdle()
          }
        }
      return await this.transfer(taskId, piece, source, signal, (bytes) => {
        armIdle()
        options.onBytes?.(bytes)
      }, pace)
    } catch (err) {
      // our own timers abort with a PieceTimeoutError; libp2p may wrap or replace the
      // abort reason on the way out, so report the timeout itself
      if (stall.signal.aborted && options.signal?.aborted !== true) {
        throw stall.signal.reason
      }
      throw err
    } finally {
      clearTimeout(idle)
      clearTimeout(limit)
    }
  }

  private async transfer (taskId: string, piece: PieceAssignment, source: PieceSource, signal: AbortSignal, onBytes: (bytes: number) => void, pace?: (bytes: number) => Promise<void>): Promise<StoredPiece> {
    const stream = await this.components.libp2p.dialProtocol(addressesOf(source), PIECE_PROTOCOL, { signal })
    const framed = new FramedStream(stream, { maxFrameLength: MAX_DATA_FRAME })

    try {
      await framed.writeJson({ taskId, num: piece.num, offset: piece.offset, length: piece.length }, { signal })
      const header = await framed.readJson(pieceResponseHeaderSchema, { signal })
      if (header.status === 'error') {
        const message = `${source.kind} ${source.peerId}: ${header.message}`
        throw header.code === 'NOT_FOUND' ? new PieceNotFoundError(message) : header.code === 'BUSY' ? new PeerBusyError(message) : new ProtocolError(message)
      }
      if (header.length !== piece.length) {
        throw new PieceLengthMismatchError(`${source.peerId} offers piece ${piece.num} with ${header.length} bytes, expected ${piece.length}`)
      }
      if (header.digest !== piece.digest) {
        throw new PieceDigestMismatchError(`${source.peerId} holds piece ${piece.num} as ${header.digest}, expected ${piece.digest}`)
      }

      const writer = await this.components.store.openPieceWriter(taskId, { num: piece.num, offset: piece.offset, length: piece.length }, { expectedDigest: piece.digest })
      try {
        // bounded by the timeouts, and the writer refuses more bytes than the piece has
        for (let frame = await framed.readFrame({ signal }); frame != null; frame = await framed.readFrame({ signal })) {
          onBytes(frame.byteLength)
          for (const buf of frame) {
            await writer.write(buf)
          }
          await pace?.(frame.byteLength)
        }
        const stored = await writer.commit()
        await stream.close({ signal }).catch(() => {})
        return stored
      } catch (err) {
        await writer.abort()
        throw err
      }
    } catch (err) {
      stream.abort(err as Error)
      throw err
    } finally {
      framed.release()
    }
  }
}

function addressesOf (source: PieceSource): Multiaddr[] {
  return source.addrs.map(addr => {
    const ma = multiaddr(addr)
    return addr.includes('/p2p/') ? ma : ma.encapsulate(`/p2p/${source.peerId}`)
  })
}
