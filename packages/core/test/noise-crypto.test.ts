import { randomBytes } from 'node:crypto'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createP2PNode, FramedStream, generateClusterKey, loadOrCreatePrivateKey, parseClusterKey } from '../src/index.ts'
import { clusterProtector } from '../src/p2p/cluster-protector.ts'

const ECHO = '/shoal-test/echo/1.0.0'

/** Answers each frame with the same bytes. */
async function serveEcho (node: Libp2p): Promise<void> {
  await node.handle(ECHO, async (stream) => {
    const framed = new FramedStream(stream, { maxFrameLength: 1024 * 1024 })
    for (let frame = await framed.readFrame(); frame != null; frame = await framed.readFrame()) {
      await framed.writeFrame(frame)
    }
    await stream.close()
  })
}

async function roundTrip (from: Libp2p, to: Libp2p, data: Uint8Array): Promise<Buffer> {
  const stream = await from.dialProtocol(to.getMultiaddrs(), ECHO, { signal: AbortSignal.timeout(10_000) })
  const framed = new FramedStream(stream, { maxFrameLength: 1024 * 1024 })
  await framed.writeFrame(data)
  const back = await framed.readFrame({ signal: AbortSignal.timeout(10_000) })
  await stream.close()
  return Buffer.from(back?.subarray() ?? [])
}

describe("Shoal's Noise cipher", () => {
  let ours: Libp2p
  let stock: Libp2p

  beforeAll(async () => {
    const clusterKey = parseClusterKey(generateClusterKey())
    ours = await createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey: await loadOrCreatePrivateKey(join(await mkdtemp(join(tmpdir(), 'shoal-noise-')), 'peer.key')), clusterKey })
    // a node with the library's stock Noise, as another libp2p implementation would run it
    stock = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionProtector: clusterProtector({ key: clusterKey }),
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()]
    })
    await Promise.all([serveEcho(ours), serveEcho(stock)])
  })

  afterAll(async () => {
    await Promise.all([ours.stop(), stock.stop()])
  })

  it('talks to the stock implementation both ways, small messages and large, byte for byte', async () => {
    for (const size of [100, 1199, 1200, 70_000, 900_000]) {
      const data = randomBytes(size)
      expect((await roundTrip(ours, stock, data)).equals(data)).toBe(true)
      expect((await roundTrip(stock, ours, data)).equals(data)).toBe(true)
    }
  })
})
