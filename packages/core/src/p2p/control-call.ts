import { CONTROL_PROTOCOL, MAX_CONTROL_FRAME, controlResponseSchema, type ControlRequest, type ControlResponse } from '../protocol/control-protocol.ts'
import { FramedStream } from './framed-stream.ts'
import type { Libp2p } from 'libp2p'
import type { Multiaddr } from '@multiformats/multiaddr'

/** Control calls open at once to one supernode. */
const MAX_CONTROL_STREAMS = 4096

export interface ControlCallComponents {
  libp2p: Pick<Libp2p, 'dialProtocol'>
}

/**
 * Makes one control-plane call to a supernode over libp2p: dials (or reuses the
 * connection to) `to`, writes the request, reads the answer. The signal bounds all of
 * it; the caller gives it a timeout.
 *
 * @throws whatever dialing or the stream throws (network trouble), `ProtocolError` on a malformed answer
 */
export async function controlCall (components: ControlCallComponents, to: Multiaddr[], request: ControlRequest, options: { signal: AbortSignal }): Promise<ControlResponse> {
  const { signal } = options
  // every download holds a schedule long-poll: libp2p's default of 64 streams of one
  // protocol per connection would turn the 65th into an "unavailable" supernode
  const stream = await components.libp2p.dialProtocol(to, CONTROL_PROTOCOL, { signal, maxOutboundStreams: MAX_CONTROL_STREAMS })
  const framed = new FramedStream(stream, { maxFrameLength: MAX_CONTROL_FRAME })
  try {
    await framed.writeJson(request, { signal })
    const response = await framed.readJson(controlResponseSchema, { signal })
    await stream.close({ signal }).catch(() => {})
    return response
  } catch (err) {
    stream.abort(err as Error)
    throw err
  } finally {
    framed.release()
  }
}
