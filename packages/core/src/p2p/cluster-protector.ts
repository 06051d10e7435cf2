import { createCipheriv, createHmac, randomBytes, type Cipheriv } from 'node:crypto'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import { Uint8ArrayList } from 'uint8arraylist'
import type { AbortOptions, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface'

/** Random bytes each side contributes to a connection's keys. */
const NONCE_LENGTH = 32
/** Separates these keys from any other use of the cluster key. */
const KEY_LABEL = 'shoal cluster key v1'
const ZERO_IV = Buffer.alloc(16)

export interface ClusterProtectorInit {
  /** The 32-byte cluster key (see `parseClusterKey`) */
  key: Uint8Array
  /** Longest the nonce exchange may take. @default 10000 ms */
  timeout?: number
}

/**
 * A libp2p private network: every byte of a connection, the Noise handshake included,
 * is encrypted with a key derived from the cluster key, so a node without it cannot
 * get past the handshake. The design is `@libp2p/pnet`'s (each side sends a random
 * nonce in clear, then each direction is a stream cipher keyed from the shared key and
 * the sender's nonce; Noise above it authenticates and protects integrity), with
 * ChaCha20 from `node:crypto` (OpenSSL) instead of pnet's XSalsa20 in WebAssembly:
 *
 * - `@libp2p/pnet` 3.0.27's cipher fails under load: its WebAssembly memory is shared
 *   by every connection of the process and a large write after another connection's
 *   grew it aborts with `WebAssembly.Memory.grow(): Maximum memory size exceeded`
 *   (js-libp2p#3585), which `./dev bench transport` hit within a second;
 * - native ChaCha20 costs a fraction of the CPU, and decrypts without extra copies.
 *
 * Keys: HMAC-SHA256(cluster key, label ‖ sender's nonce) per direction, so no key
 * stream is ever reused (each connection brings fresh random nonces).
 */
export function clusterProtector (init: ClusterProtectorInit): () => ConnectionProtector {
  if (init.key.byteLength !== 32) {
    throw new RangeError('the cluster key must be 32 bytes')
  }
  return () => new ClusterProtector(init)
}

class ClusterProtector implements ConnectionProtector {
  private readonly key: Uint8Array
  private readonly timeout: number
  readonly [Symbol.toStringTag] = 'shoal:cluster-protector'

  constructor (init: ClusterProtectorInit) {
    this.key = init.key
    this.timeout = init.timeout ?? 10_000
  }

  async protect (connection: MessageStream, options: AbortOptions = {}): Promise<MessageStream> {
    const signal = options.signal ?? AbortSignal.timeout(this.timeout)
    const localNonce = randomBytes(NONCE_LENGTH)
    const bytes = byteStream(connection)
    const [remote] = await Promise.all([
      bytes.read({ bytes: NONCE_LENGTH, signal }),
      bytes.write(localNonce, { signal })
    ])
    return new ClusterKeyStream({
      maConn: bytes.unwrap() as MultiaddrConnection,
      outbound: createCipheriv('chacha20', this.derive(localNonce), ZERO_IV),
      inbound: createCipheriv('chacha20', this.derive(remote.subarray()), ZERO_IV)
    })
  }

  private derive (nonce: Uint8Array): Buffer {
    return createHmac('sha256', this.key).update(KEY_LABEL).update(nonce).digest()
  }
}

interface ClusterKeyStreamInit {
  maConn: MultiaddrConnection
  outbound: Cipheriv
  inbound: Cipheriv
}

/** The protected connection: XORs the key stream into everything in both directions. */
class ClusterKeyStream extends AbstractMultiaddrConnection {
  private readonly maConn: MultiaddrConnection
  private readonly outbound: Cipheriv
  private readonly inbound: Cipheriv

  constructor (init: ClusterKeyStreamInit) {
    super({
      log: init.maConn.log.newScope('cluster-key'),
      remoteAddr: init.maConn.remoteAddr,
      direction: init.maConn.direction
    })
    this.maConn = init.maConn
    this.outbound = init.outbound
    this.inbound = init.inbound

    this.maConn.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) {
        this.onData(this.inbound.update(data))
      } else {
        for (const buf of data) {
          this.onData(this.inbound.update(buf))
        }
      }
    })
    // resume sending when the underlying connection can take more
    this.maConn.addEventListener('drain', () => {
      this.onMuxerDrain()
    })
    this.maConn.addEventListener('close', (evt) => {
      if (evt.error != null) {
        if (evt.local === true) {
          this.abort(evt.error)
        } else {
          this.onRemoteReset()
        }
      } else {
        this.onTransportClosed()
      }
    })
  }

  async sendClose (options?: AbortOptions): Promise<void> {
    await this.maConn.close(options)
  }

  sendData (data: Uint8ArrayList): { sentBytes: number, canSendMore: boolean } {
    // each buffer on its own: no concatenation, one native pass per buffer
    const out = new Uint8ArrayList()
    for (const buf of data) {
      out.append(this.outbound.update(buf))
    }
    return { sentBytes: data.byteLength, canSendMore: this.maConn.send(out) }
  }

  sendReset (err: Error): void {
    this.maConn.abort(err)
  }

  sendPause (): void {
    this.maConn.pause()
  }

  sendResume (): void {
    this.maConn.resume()
  }
}
