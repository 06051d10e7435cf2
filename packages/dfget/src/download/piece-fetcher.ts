import {
  FramedStream, MAX_DATA_FRAME, PeerBusyError, PIECE_PROTOCOL, PieceDigestMismatchError, PieceLengthMismatchError, PieceNotFoundError,
  pieceResponseHeaderSchema, ProtocolError, type PieceAssignment, type PieceSource, type PieceStore, type StoredPiece
} from '@shoal/core'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Libp2p } from 'libp2p'

export interface PieceFetcherComponents {
  libp2p: Pick<Libp2p, 'dialProtocol'>
  store: PieceStore
}

export interface PieceFetcherInit {
  /** Longest one piece may take, dial included. @default 60000 ms */
  timeout?: number
}

/**
 * Fetches one piece from one source over `/shoal/piece/1.0.0` straight into the store,
 * hashing as it writes; the piece is recorded only if it matches the digest the
 * supernode gave for it.
 */
export class PieceFetcher {
  private readonly components: PieceFetcherComponents
  private readonly timeout: number

  constructor (components: PieceFetcherComponents, init: PieceFetcherInit = {}) {
    this.components = components
    this.timeout = init.timeout ?? 60_000
  }

  /**
   * @throws {PieceNotFoundError | PeerBusyError | ProtocolError | PieceDigestMismatchError | PieceLengthMismatchError}
   */
  async fetch (taskId: string, piece: PieceAssignment, source: PieceSource, options: { signal?: AbortSignal } = {}): Promise<StoredPiece> {
    const signal = AbortSignal.any([AbortSignal.timeout(this.timeout), ...(options.signal != null ? [options.signal] : [])])
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
        // bounded by the timeout, and the writer refuses more bytes than the piece has
        for (let frame = await framed.readFrame({ signal }); frame != null; frame = await framed.readFrame({ signal })) {
          for (const buf of frame) {
            await writer.write(buf)
          }
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
