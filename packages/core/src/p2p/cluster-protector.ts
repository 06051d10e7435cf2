import { createCipheriv, createHmac, randomBytes } from 'node:crypto'
import { AbstractMultiaddrConnection, byteStream } from '@libp2p/utils'
import { ProtocolError } from '../errors.ts'
import type { Uint8ArrayList } from 'uint8arraylist'
import type { AbortOptions, ConnectionProtector, MessageStream, MultiaddrConnection } from '@libp2p/interface'

/** Random bytes each side contributes to a connection's keys. */
const NONCE_LENGTH = 32
/** Separates these keys from any other use of the cluster key. */
const KEY_LABEL = 'shoal cluster key v1'
const ZERO_IV = Buffer.alloc(16)
/** Key stream made ahead, per native call, for small buffers. */
const BLOCK = 16 * 1024
const ZEROS = Buffer.alloc(BLOCK)
/** Buffers at least this large go through the native cipher directly. */
const NATIVE_MIN = 8 * 1024

export interface ClusterProtectorInit {
  /** The 32-byte cluster key (see `parseClusterKey`) */
  key: Uint8Array
  /** Longest the nonce exchange may take when libp2p gives no signal of its own (it does: its upgrade timeout). @default 10000 ms */
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
 * Keys: HMAC-SHA256(cluster key, label ‖ sender's nonce ‖ receiver's nonce) per
 * direction, so no key stream is ever reused: each connection brings fresh random
 * nonces, the two directions differ, and a nonce sent back is refused.
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
    const [remoteList] = await Promise.all([
      bytes.read({ bytes: NONCE_LENGTH, signal }),
      bytes.write(localNonce, { signal })
    ])
    const remoteNonce = remoteList.subarray()
    if (Buffer.compare(Buffer.from(remoteNonce), localNonce) === 0) {
      // our own nonce sent back: both directions would share one key stream
      throw new ProtocolError('the remote sent back this side\'s nonce')
    }
    return new ClusterKeyStream({
      maConn: bytes.unwrap() as MultiaddrConnection,
      outbound: new KeyStream(this.derive(localNonce, remoteNonce)),
      inbound: new KeyStream(this.derive(remoteNonce, localNonce))
    })
  }

  /** The key of the direction from the side that sent `from` to the side that sent `to`. */
  private derive (from: Uint8Array, to: Uint8Array): Buffer {
    return createHmac('sha256', this.key).update(KEY_LABEL).update(from).update(to).digest()
  }
}

/**
 * A ChaCha20 key stream. Large buffers go through OpenSSL directly; small ones are XORed
 * in place with key stream made ahead 16 KiB at a time, a 32-bit word at a time in JS:
 * each native call has a fixed cost of 2–3 µs (`./dev bench cipher`), and a shaped TCP link delivers
 * reads of a kilobyte or two, where calling the cipher per read made the key cost as
 * much as Noise itself.
 */
export class KeyStream {
  private readonly cipher
  /** Key stream made ahead and not used yet: `block[pos..]` */
  private block: Uint8Array = new Uint8Array(0)
  private pos = 0
  /** The block copied to each alignment (mod 4), made on demand, so words line up with any buffer */
  private shifted: Array<Uint8Array | undefined> = []

  constructor (key: Uint8Array) {
    this.cipher = createCipheriv('chacha20', key, ZERO_IV)
  }

  /**
   * Encrypts (or decrypts) the next `buf.byteLength` bytes: in place for small
   * buffers (which must be the caller's to change), into a new buffer for large ones,
   * which are left as they were. Returns the result.
   */
  transform (buf: Uint8Array): Uint8Array {
    const ahead = Math.min(this.block.byteLength - this.pos, buf.byteLength)
    if (buf.byteLength - ahead >= NATIVE_MIN) {
      if (ahead === 0) {
        return this.cipher.update(buf)
      }
      // use up what was made ahead (on a copy: a large buffer may still be its
      // caller's), then the rest natively
      const head = new Uint8Array(buf.subarray(0, ahead))
      this.xorSpan(head, 0, ahead)
      this.pos += ahead
      return Buffer.concat([head, this.cipher.update(buf.subarray(ahead))])
    }
    // bounded: each pass consumes at least one byte of buf
    for (let i = 0; i < buf.byteLength;) {
      if (this.pos === this.block.byteLength) {
        this.block = this.cipher.update(ZEROS)
        this.pos = 0
        this.shifted = []
      }
      const m = Math.min(buf.byteLength - i, this.block.byteLength - this.pos)
      this.xorSpan(buf, i, m)
      i += m
      this.pos += m
    }
    return buf
  }

  /** XORs `m` bytes of the block made ahead (from `pos`) into `buf` at `at`. */
  private xorSpan (buf: Uint8Array, at: number, m: number): void {
    const dst = buf.byteOffset + at
    // the block, or a copy of it, whose bytes sit at the same offset mod 4 as buf's
    const need = (dst - this.pos) & 3
    let ks = this.block
    const ksAt = this.pos
    if ((ks.byteOffset & 3) !== need) {
      let copy = this.shifted[need]
      if (copy == null) {
        copy = new Uint8Array(this.block.byteLength + 4).subarray(need)
        copy.set(this.block)
        this.shifted[need] = copy
      }
      ks = copy
    }
    let j = 0
    for (; j < m && ((dst + j) & 3) !== 0; j++) {
      buf[at + j] = buf[at + j]! ^ ks[ksAt + j]!
    }
    const words = (m - j) >>> 2
    if (words > 0) {
      const bw = new Int32Array(buf.buffer, dst + j, words)
      const kw = new Int32Array(ks.buffer, ks.byteOffset + ksAt + j, words)
      for (let w = 0; w < words; w++) {
        bw[w] = bw[w]! ^ kw[w]!
      }
      j += words << 2
    }
    for (; j < m; j++) {
      buf[at + j] = buf[at + j]! ^ ks[ksAt + j]!
    }
  }
}

interface ClusterKeyStreamInit {
  maConn: MultiaddrConnection
  outbound: KeyStream
  inbound: KeyStream
}

/** The protected connection: XORs the key stream into everything in both directions. */
class ClusterKeyStream extends AbstractMultiaddrConnection {
  private readonly maConn: MultiaddrConnection
  private readonly outbound: KeyStream
  private readonly inbound: KeyStream

  constructor (init: ClusterKeyStreamInit) {
    super({
      log: init.maConn.log.newScope('cluster-key'),
      remoteAddr: init.maConn.remoteAddr,
      direction: init.maConn.direction
    })
    this.maConn = init.maConn
    this.outbound = init.outbound
    this.inbound = init.inbound

    // small reads are decrypted in place: a socket's read buffers are this connection's alone
    this.maConn.addEventListener('message', (evt) => {
      const data = evt.data
      if (data instanceof Uint8Array) {
        this.onData(this.inbound.transform(data))
      } else {
        for (const buf of data) {
          this.onData(this.inbound.transform(buf))
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
    // small buffers are encrypted in place, so they must be ours: the caller may still
    // hold its own. Joining several makes that copy; a single small one is copied
    const bufs = [...data]
    let out = bufs.length === 1 ? bufs[0]! : data.subarray()
    if (bufs.length === 1 && out.byteLength < NATIVE_MIN) {
      out = new Uint8Array(out)
    }
    return { sentBytes: data.byteLength, canSendMore: this.maConn.send(this.outbound.transform(out)) }
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
