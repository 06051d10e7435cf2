import { join } from 'node:path'
import { Counter, Gauge } from 'prom-client'
import { PieceStore } from '../store/piece-store.ts'
import { createP2PNode, loadOrCreatePrivateKey } from './node.ts'
import { PieceServer } from './piece-server.ts'
import type { DiskQuotaInit } from '../store/disk-quota.ts'
import type { ComponentLogger } from '../logger.ts'
import type { RateLimit } from '../rate/token-bucket.ts'
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
  /** The piece store's disk limit. @default no quota; watermarks 0.9 / 0.8 */
  disk?: DiskQuotaInit
}

export interface PeerNodeComponents {
  logger: ComponentLogger
  metrics: Registry
  /** This host's upload limit for the piece server. @default none */
  uploadLimit?: RateLimit
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
    this.store = new PieceStore({ logger: components.logger }, { dataDir: init.dataDir, ...(init.disk != null ? { disk: init.disk } : {}) })
    const { store } = this
    new Gauge({
      name: `${init.metricPrefix}_disk_bytes`,
      help: 'Bytes of verified pieces in the piece store',
      registers: [components.metrics],
      collect () { this.set(store.bytesStored) }
    })
    new Gauge({
      name: `${init.metricPrefix}_disk_quota_bytes`,
      help: 'The piece store\'s disk quota (--disk-quota) in bytes; 0: no quota',
      registers: [components.metrics],
      collect () { this.set(store.quota) }
    })
    const evictions = new Counter({
      name: `${init.metricPrefix}_evictions_total`,
      help: 'Tasks evicted from the piece store to stay under the disk quota',
      registers: [components.metrics]
    })
    store.onTaskDropped((_taskId, reason) => {
      if (reason === 'evicted') {
        evictions.inc()
      }
    })
  }

  async start (): Promise<void> {
    await this.store.start()
    const privateKey = await loadOrCreatePrivateKey(join(this.init.dataDir, 'peer.key'))
    this.node = await createP2PNode({ listen: this.init.p2pListen, announce: this.init.p2pAnnounce, privateKey, clusterKey: this.init.clusterKey })
    this.server = new PieceServer({
      libp2p: this.node,
      store: this.store,
      logger: this.components.logger,
      metrics: this.components.metrics,
      ...(this.components.uploadLimit != null ? { uploadLimit: this.components.uploadLimit } : {})
    }, {
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
