import { createCipheriv, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createP2PNode, generateClusterKey, InvalidConfigError, parseClusterKey, readClusterKeyFile, writeClusterKeyFile
} from '../src/index.ts'
import { KeyStream } from '../src/p2p/cluster-protector.ts'

const PING = '/shoal-test/ping/1.0.0'

async function member (clusterKey: Uint8Array): Promise<Libp2p> {
  const node = await createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey: await generateKeyPair('Ed25519'), clusterKey })
  await node.handle(PING, async (stream) => { await stream.close() })
  return node
}

describe('cluster key', () => {
  let dir: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-cluster-key-'))
  })

  it('writes a key file readable by its owner only, and never overwrites one', async () => {
    const path = join(dir, 'sub', 'cluster.key')
    await writeClusterKeyFile(path)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    const text = await readFile(path, 'utf8')
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    await expect(writeClusterKeyFile(path)).rejects.toThrow(/already exists/)
    expect(await readFile(path, 'utf8')).toBe(text)
    expect(Buffer.from(await readClusterKeyFile(path)).toString("hex")).toBe(text.split("\n")[2])
  })

  it('makes a different key every time', () => {
    expect(generateClusterKey()).not.toBe(generateClusterKey())
  })

  it('names the problem with a missing or malformed key file', async () => {
    await expect(readClusterKeyFile(join(dir, 'missing.key'))).rejects.toThrow(/no such file.*dfctl cluster-key generate/)
    const bad = join(dir, 'bad.key')
    await writeFile(bad, '/key/swarm/psk/1.0.0/\n/base16/\nnothex\n')
    await expect(readClusterKeyFile(bad)).rejects.toBeInstanceOf(InvalidConfigError)
    expect(() => parseClusterKey('')).toThrow(/not a cluster key/)
  })

  describe('a private network', () => {
    const key = parseClusterKey(generateClusterKey())
    let inside: Libp2p
    let peer: Libp2p
    let otherCluster: Libp2p
    let outsider: Libp2p

    beforeAll(async () => {
      inside = await member(key)
      peer = await member(key)
      otherCluster = await member(parseClusterKey(generateClusterKey()))
      // a stock libp2p node with no cluster key at all, as anyone could run
      outsider = await createLibp2p({
        privateKey: await generateKeyPair('Ed25519'),
        addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
        transports: [tcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        connectionManager: { dialTimeout: 3_000 }
      })
    })

    afterAll(async () => {
      await Promise.all([inside, peer, otherCluster, outsider].map(async n => n?.stop()))
    })

    it('lets a member holding the key in', async () => {
      const stream = await peer.dialProtocol(inside.getMultiaddrs(), PING, { signal: AbortSignal.timeout(10_000) })
      await stream.close()
      expect(inside.getConnections(peer.peerId).length).toBeGreaterThan(0)
    })

    it('keeps out a node with another cluster key, and a node with none, both ways', async () => {
      for (const stranger of [otherCluster, outsider]) {
        // the handshake is garbage to the other side, which fails it or waits it out
        await expect(stranger.dialProtocol(inside.getMultiaddrs(), PING, { signal: AbortSignal.timeout(3_000) })).rejects.toThrow()
        await expect(inside.dialProtocol(stranger.getMultiaddrs(), PING, { signal: AbortSignal.timeout(3_000) })).rejects.toThrow()
        expect(inside.getConnections(stranger.peerId)).toEqual([])
        expect(stranger.getConnections(inside.peerId)).toEqual([])
      }
    })
  })
})

describe('the cluster key stream', () => {
  it('is ChaCha20, byte for byte, however the data is cut and wherever it sits in memory', () => {
    const key = randomBytes(32)
    const data = randomBytes(300_000)
    const expected = createCipheriv('chacha20', key, Buffer.alloc(16)).update(data)
    const stream = new KeyStream(key)
    // pieces of odd sizes at odd offsets inside larger buffers, as socket reads arrive
    const out: Buffer[] = []
    for (let at = 0, i = 0; at < data.byteLength; i++) {
      const size = Math.min([1, 3, 1448, 7, 65_536, 70_001, 2, 9000][i % 8]!, data.byteLength - at)
      const host = Buffer.alloc(size + 8)
      const view = host.subarray(i % 5, (i % 5) + size)
      data.copy(view, 0, at, at + size)
      out.push(Buffer.from(stream.transform(view)))
      at += size
    }
    expect(Buffer.concat(out).equals(expected)).toBe(true)
  })
})
