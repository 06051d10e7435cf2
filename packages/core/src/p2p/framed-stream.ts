import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { ProtocolError, UnexpectedEndOfStreamError } from '../errors.ts'
import type { Stream, StreamCloseEvent, StreamMessageEvent } from '@libp2p/interface'
import type { z } from 'zod'

export interface FramedStreamInit {
  /** Largest frame accepted from the remote; a larger length prefix is a protocol error. */
  maxFrameLength: number
  /**
   * Buffered bytes above which the stream is paused (the muxer then stops granting the
   * sender window). @default 1 MiB
   */
  highWaterMark?: number
}

export interface SignalOptions {
  signal?: AbortSignal
}

/** What a FramedStream uses of a libp2p stream. */
export type FramedStreamSource = Pick<Stream, 'addEventListener' | 'removeEventListener' | 'readStatus' | 'readBufferLength' | 'pause' | 'resume' | 'send' | 'onDrain' | 'maxReadBufferLength' | 'close'>

/** A varint never needs more than this many bytes for a safe integer. */
const MAX_VARINT_BYTES = 9

/**
 * Length-prefixed (unsigned varint) frames over a libp2p v3 stream, with backpressure
 * on both sides: writes wait for `drain`, and reads pause the stream while the reader
 * is behind. libp2p's own `lpStream` buffers everything a fast sender pushes, which a
 * piece transfer (megabytes, written to a slower disk) must not do.
 */
export class FramedStream<S extends FramedStreamSource = Stream> {
  readonly stream: S
  private readonly buffer = new Uint8ArrayList()
  private readonly maxFrameLength: number
  private readonly highWaterMark: number
  private ended = false
  private failure?: Error
  private wake?: PromiseWithResolvers<void>

  constructor (stream: S, init: FramedStreamInit) {
    this.stream = stream
    this.maxFrameLength = init.maxFrameLength
    this.highWaterMark = init.highWaterMark ?? 1024 * 1024
    // A paused stream keeps what is in flight (at most one muxer window) in its own
    // buffer; leave room for a whole window so pausing never overflows it.
    stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, 17 * 1024 * 1024)
    stream.addEventListener('message', this.onMessage)
    // 'end', not 'remoteCloseWrite': the remote may close while a paused stream still
    // holds megabytes it has not handed over; 'end' comes once all of it has been
    stream.addEventListener('end', this.onEnd)
    stream.addEventListener('close', this.onClose)
  }

  private readonly onMessage = (evt: StreamMessageEvent): void => {
    this.buffer.append(evt.data)
    if (this.buffer.byteLength >= this.highWaterMark && this.stream.readStatus === 'readable') {
      this.stream.pause()
    }
    this.wake?.resolve()
  }

  private readonly onEnd = (): void => {
    this.ended = true
    this.wake?.resolve()
  }

  private readonly onClose = (evt: StreamCloseEvent): void => {
    if (evt.error != null) {
      this.failure = evt.error
    } else if (this.stream.readBufferLength === 0) {
      this.ended = true
    }
    // else: closed with data still held while paused; reading resumes it, and 'end'
    // follows once it has all been delivered
    this.wake?.resolve()
  }

  /**
   * Reads the next frame, or null when the remote closed cleanly between frames and
   * everything it sent has been read.
   *
   * @throws {ProtocolError} on an oversized or malformed length prefix
   * @throws {UnexpectedEndOfStreamError} when the stream ends inside a frame
   */
  async readFrame (options: SignalOptions = {}): Promise<Uint8ArrayList | null> {
    while (true) {
      const frame = this.takeFrame()
      if (frame != null) {
        return frame
      }
      if (this.failure != null) {
        throw this.failure
      }
      if (this.stream.readStatus === 'paused') {
        // no whole frame here, so whatever the stream holds back is needed: let it in
        // (before deciding the stream has ended: it may hold the rest)
        this.stream.resume()
        continue
      }
      if (this.ended) {
        if (this.buffer.byteLength === 0) {
          return null
        }
        throw new UnexpectedEndOfStreamError(`stream ended inside a frame (${this.buffer.byteLength} bytes buffered)`)
      }
      options.signal?.throwIfAborted()
      this.wake = Promise.withResolvers<void>()
      const onAbort = (): void => { this.wake?.reject(options.signal?.reason) }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      try {
        await this.wake.promise
      } finally {
        options.signal?.removeEventListener('abort', onAbort)
        this.wake = undefined
      }
    }
  }

  private takeFrame (): Uint8ArrayList | null {
    if (this.buffer.byteLength === 0) {
      return null
    }
    let length: number
    try {
      length = varint.decode(this.buffer)
    } catch (err) {
      if (err instanceof RangeError && this.buffer.byteLength < MAX_VARINT_BYTES) {
        return null
      }
      throw new ProtocolError('malformed frame length prefix')
    }
    if (length > this.maxFrameLength) {
      throw new ProtocolError(`frame of ${length} bytes is over the ${this.maxFrameLength} byte limit`)
    }
    const prefix = varint.encodingLength(length)
    if (this.buffer.byteLength < prefix + length) {
      return null
    }
    const frame = this.buffer.sublist(prefix, prefix + length)
    this.buffer.consume(prefix + length)
    if (this.stream.readStatus === 'paused' && this.buffer.byteLength < this.highWaterMark) {
      this.stream.resume()
    }
    return frame
  }

  /**
   * Reads one frame holding JSON and validates it.
   *
   * @throws {ProtocolError} when the stream ends first or the message is invalid
   */
  async readJson<T> (schema: z.ZodType<T>, options: SignalOptions = {}): Promise<T> {
    const frame = await this.readFrame(options)
    if (frame == null) {
      throw new ProtocolError('stream ended before the expected message')
    }
    let json: unknown
    try {
      json = JSON.parse(new TextDecoder().decode(frame.subarray()))
    } catch {
      throw new ProtocolError('message is not valid JSON')
    }
    const parsed = schema.safeParse(json)
    if (!parsed.success) {
      throw new ProtocolError(`invalid message: ${parsed.error.issues.map(i => `${i.path.join('.')} ${i.message}`).join('; ')}`)
    }
    return parsed.data
  }

  /** Writes one frame, waiting while the muxer's send window is full. */
  async writeFrame (data: Uint8Array | Uint8ArrayList, options: SignalOptions = {}): Promise<void> {
    if (!this.stream.send(new Uint8ArrayList(varint.encode(data.byteLength), data))) {
      await this.stream.onDrain(options)
    }
  }

  async writeJson (message: unknown, options: SignalOptions = {}): Promise<void> {
    await this.writeFrame(new TextEncoder().encode(JSON.stringify(message)), options)
  }

  /** Stops listening to the stream (it is not closed). */
  release (): void {
    this.stream.removeEventListener('message', this.onMessage)
    this.stream.removeEventListener('end', this.onEnd)
    this.stream.removeEventListener('close', this.onClose)
  }
}
