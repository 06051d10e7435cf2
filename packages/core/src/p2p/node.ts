import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { tcp } from '@libp2p/tcp'
import { createLibp2p, type Libp2p } from 'libp2p'
import { InvalidConfigError } from '../errors.ts'
import { clusterProtector } from './cluster-protector.ts'
import { noiseCrypto } from './noise-crypto.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface P2PNodeInit {
  /** TCP multiaddrs to listen on, such as `/ip4/0.0.0.0/tcp/65002` */
  listen: string[]
  /** Addresses to tell others instead of the listen addresses (NAT, containers). */
  announce?: string[]
  /** The node's identity; see {@link loadOrCreatePrivateKey}. */
  privateKey: PrivateKey
  /**
   * The cluster's pre-shared key (see `readClusterKeyFile`); only nodes holding it can
   * connect. `null` (never a default) makes an open node, for measuring what the key costs.
   */
  clusterKey: Uint8Array | null
}

/**
 * A libp2p node as every Shoal component runs it: a private network (the cluster key)
 * over TCP, Noise encryption, yamux multiplexing, and nothing else (no DHT, no identify
 * push): peers find each other through the supernode.
 */
export async function createP2PNode (init: P2PNodeInit): Promise<Libp2p> {
  return createLibp2p({
    privateKey: init.privateKey,
    addresses: {
      listen: init.listen,
      ...(init.announce != null && init.announce.length > 0 ? { announce: init.announce } : {})
    },
    transports: [tcp({ outboundSocketInactivityTimeout: 120_000, inboundSocketInactivityTimeout: 120_000 })],
    // libp2p bounds the nonce exchange with its own upgrade timeout
    ...(init.clusterKey != null ? { connectionProtector: clusterProtector({ key: init.clusterKey }) } : {}),
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    streamMuxers: [yamux()],
    connectionManager: {
      maxConnections: 1024,
      dialTimeout: 10_000,
      // libp2p's defaults (10 handshakes in progress, 5 new connections a second per
      // address) refuse a release's fan-out: every daemon dials the supernode and its
      // peers at once, and hosts behind one NAT address share the per-address budget
      maxIncomingPendingConnections: 256,
      inboundConnectionThreshold: 100
    }
  })
}

/**
 * Loads the node's private key, creating it on first start, so the peer id (which
 * other peers and the supernode know it by) survives restarts. Written atomically,
 * readable by its owner only.
 */
export async function loadOrCreatePrivateKey (path: string): Promise<PrivateKey> {
  let bytes: Buffer | undefined
  try {
    bytes = await readFile(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw err
    }
  }
  if (bytes != null) {
    try {
      return privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new InvalidConfigError(`peer key ${path} is not a libp2p private key (${(err as Error).message}); remove it to make a new identity`)
    }
  }

  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.${process.pid}.tmp`
  await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600, flush: true })
  await rename(tmp, path)
  return key
}
