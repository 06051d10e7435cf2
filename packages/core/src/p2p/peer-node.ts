import { join } from 'node:path'
import { PieceStore } from '../store/piece-store.ts'
import { createP2PNode, loadOrCreatePrivateKey } from './node.ts'
import { PieceServer } from './piece-server.ts'
import type { ComponentLogger } from '../logger.ts'
import type { PeerAddress } from '../protocol/api.ts'
import type { Libp2p } from 'libp2p'
import type { Registry } from 'prom-client'

export interface PeerNodeInit {
  /** Holds the piece store and the peer key (`peer.key`). */
  dataDir: string
  /** libp2p TCP listen multiaddrs */
  p2pListen: string[]
  /** Addresses announced instead of the listen addresses. @default [] */
  p2pAnnounce?: string[]
  /** Metric name prefix for the piece server, such as `shoal_dfget` */
  metricPrefix: string
  /** Pieces served at once. @default 16 */
  maxConcurrentUploads?: number
  /** The cluster's pre-shared key; see `readClusterKeyFile`. */
  clusterKey: Uint8Array
}

export interface PeerNodeComponents {
  logger: ComponentLogger
  metrics: Registry
}

/**
 * What the supernode and every daemon have in common: a piece store on disk, a libp2p
 * node with a stable identity, and a piece server that shares the stored pieces.
 */
export class PeerNode {
  readonly store: PieceStore
  private readonly components: PeerNodeComponents
  private readonly init: PeerNodeInit
  private node?: Libp2p
  private server?: PieceServer

  constructor (components: PeerNodeComponents, init: PeerNodeInit) {
    this.components = components
    this.init = init
    this.store = new PieceStore({ logger: components.logger }, { dataDir: init.dataDir })
  }

  async start (): Promise<void> {
    await this.store.start()
    const privateKey = await loadOrCreatePrivateKey(join(this.init.dataDir, 'peer.key'))
    this.node = await createP2PNode({ listen: this.init.p2pListen, announce: this.init.p2pAnnounce, privateKey, clusterKey: this.init.clusterKey })
    this.server = new PieceServer({ libp2p: this.node, store: this.store, logger: this.components.logger, metrics: this.components.metrics }, {
      metricPrefix: this.init.metricPrefix,
      maxConcurrentUploads: this.init.maxConcurrentUploads
    })
    await this.server.start()
  }

  async stop (): Promise<void> {
    await this.server?.stop()
    await this.node?.stop()
    await this.store.stop()
  }

  get libp2p (): Libp2p {
    if (this.node == null) {
      throw new Error('peer node is not started')
    }
    return this.node
  }

  /** How other peers reach this one. */
  address (): PeerAddress {
    return { peerId: this.libp2p.peerId.toString(), addrs: this.libp2p.getMultiaddrs().map(ma => ma.toString()) }
  }
}
