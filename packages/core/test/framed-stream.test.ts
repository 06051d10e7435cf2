import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Uint8ArrayList } from 'uint8arraylist'
import { createP2PNode, FramedStream, generateClusterKey, loadOrCreatePrivateKey, parseClusterKey, type FramedStreamSource } from '../src/index.ts'
import type { Libp2p } from 'libp2p'

const BURST = '/shoal-test/burst/1.0.0'
const FRAME = 256 * 1024
const FRAMES = 64

const clusterKey = parseClusterKey(generateClusterKey())

async function node (): Promise<Libp2p> {
  return createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey: await loadOrCreatePrivateKey(join(await mkdtemp(join(tmpdir(), 'shoal-fs-')), 'peer.key')), clusterKey })
}

describe('FramedStream', () => {
  let sender: Libp2p
  let receiver: Libp2p

  beforeAll(async () => {
    ;[sender, receiver] = await Promise.all([node(), node()])
    // sends FRAMES frames as fast as it may, then closes its side at once
    await sender.handle(BURST, async (stream) => {
      const framed = new FramedStream(stream, { maxFrameLength: 1024 })
      await framed.readFrame()
      for (let i = 0; i < FRAMES; i++) {
        await framed.writeFrame(Buffer.alloc(FRAME, i))
      }
      await stream.close()
    })
  })

  afterAll(async () => {
    await Promise.all([sender.stop(), receiver.stop()])
  })

  // A reader that falls behind pauses the stream, and the sender finishes and closes
  // its side meanwhile: every frame must still be read, in order.
  it('reads every frame a sender wrote before closing, though the reader fell behind and paused', async () => {
    const stream = await receiver.dialProtocol(sender.getMultiaddrs(), BURST, { signal: AbortSignal.timeout(10_000) })
    const framed = new FramedStream(stream, { maxFrameLength: FRAME })
    await framed.writeFrame(Buffer.from('go'))
    const seen: number[] = []
    // keep up at first, so the muxer opens its window wide...
    for (let i = 0; i < 16; i++) {
      seen.push((await framed.readFrame({ signal: AbortSignal.timeout(10_000) }))!.get(0))
    }
    // ...then fall behind: the rest arrives, and the sender closes, while paused
    await new Promise(resolve => setTimeout(resolve, 1000))
    for (let frame = await framed.readFrame({ signal: AbortSignal.timeout(10_000) }); frame != null; frame = await framed.readFrame({ signal: AbortSignal.timeout(10_000) })) {
      expect(frame.byteLength).toBe(FRAME)
      seen.push(frame.get(0))
    }
    expect(seen).toEqual(Array.from({ length: FRAMES }, (_, i) => i))
    await stream.close()
  })
})

/**
 * A stream as libp2p's message streams behave when paused: what arrives meanwhile is
 * held back and handed over on resume(); 'remoteCloseWrite' comes as soon as the remote
 * closes, 'end' only once everything held back was handed over.
 */
class PausingStream extends EventTarget {
  readStatus: 'readable' | 'paused' | 'closed' = 'readable'
  maxReadBufferLength = 4 * 1024 * 1024
  private held: Uint8Array[] = []
  private remoteClosed = false

  get readBufferLength (): number {
    return this.held.reduce((n, b) => n + b.byteLength, 0)
  }

  /** The remote sends: delivered now, or held while paused. */
  push (data: Uint8Array): void {
    if (this.readStatus === 'paused') {
      this.held.push(data)
    } else {
      this.dispatchEvent(Object.assign(new Event('message'), { data }))
    }
  }

  remoteClose (): void {
    this.remoteClosed = true
    this.dispatchEvent(new Event('remoteCloseWrite'))
    this.maybeEnd()
  }

  pause (): void {
    this.readStatus = 'paused'
  }

  resume (): void {
    this.readStatus = 'readable'
    const held = this.held
    this.held = []
    for (const data of held) {
      this.dispatchEvent(Object.assign(new Event('message'), { data }))
    }
    this.maybeEnd()
  }

  private maybeEnd (): void {
    if (this.remoteClosed && this.held.length === 0 && this.readStatus !== 'closed') {
      this.readStatus = 'closed'
      this.dispatchEvent(new Event('end'))
    }
  }

  send (): boolean { return true }
  async onDrain (): Promise<void> {}
  async close (): Promise<void> {}
}

describe('FramedStream on a stream that holds data back while paused', () => {
  // The remote's close is announced at once, whatever the paused stream still holds;
  // the end of the data is 'end'. A reader that took the announcement for the end lost
  // the tail of a frame larger than its high-water mark.
  it('reads what the remote sent before closing, though the close was announced first', async () => {
    const stream = new PausingStream()
    const framed = new FramedStream(stream as unknown as FramedStreamSource, { maxFrameLength: 5000, highWaterMark: 2000 })
    const frames = Array.from({ length: 3 }, (_, i) => new Uint8ArrayList(new Uint8Array([0xb8, 0x17]), new Uint8Array(3000).fill(i)).subarray())
    for (const f of frames) {
      // in pieces, as a muxer delivers them; the reader pauses past 2000 bytes
      for (let at = 0; at < f.byteLength; at += 500) {
        stream.push(f.subarray(at, at + 500))
      }
    }
    stream.remoteClose()
    const seen: number[] = []
    for (let frame = await framed.readFrame(); frame != null; frame = await framed.readFrame()) {
      expect(frame.byteLength).toBe(3000)
      seen.push(frame.get(0))
    }
    expect(seen).toEqual([0, 1, 2])
  })
})
