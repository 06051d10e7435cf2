import { DEFAULT_PEER_BUSY_BACKOFF, DEFAULT_PEER_COOLDOWN, DEFAULT_PEER_FAILURE_LIMIT, DEFAULT_PEER_TTL } from '../scheduler/constants.ts'
import type { PeerInfo } from '@shoal/core'

export interface PeerRegistryInit {
  /** Consecutive failed piece transfers after which a peer is not offered as a source. @default 5 */
  failureLimit?: number
  /** How long a failing peer is left out. @default 30000 ms */
  cooldown?: number
  /**
   * How long a peer that answered BUSY (every upload slot taken) is not offered as a
   * source: long enough for some of its uploads to finish. @default 1000 ms
   */
  busyBackoff?: number
  /**
   * Peers not heard from for this long are forgotten. Daemons announce themselves every
   * minute (`PUT /api/v1/peers/:peerId`), so only a daemon that is gone misses this.
   * @default 300000 ms
   */
  ttl?: number
}

interface PeerRecord {
  info: PeerInfo
  lastSeen: number
  consecutiveFailures: number
  blockedUntil: number
  busyUntil: number
}

/**
 * The peers the supernode knows: how to reach them and whether they have been serving
 * pieces well enough to be offered as sources.
 */
export class PeerRegistry {
  private readonly peers = new Map<string, PeerRecord>()
  private readonly failureLimit: number
  private readonly cooldown: number
  private readonly busyBackoff: number
  private readonly ttl: number

  constructor (init: PeerRegistryInit = {}) {
    this.failureLimit = init.failureLimit ?? DEFAULT_PEER_FAILURE_LIMIT
    this.cooldown = init.cooldown ?? DEFAULT_PEER_COOLDOWN
    this.busyBackoff = init.busyBackoff ?? DEFAULT_PEER_BUSY_BACKOFF
    this.ttl = init.ttl ?? DEFAULT_PEER_TTL
  }

  upsert (info: PeerInfo): void {
    const existing = this.peers.get(info.peerId)
    if (existing != null) {
      existing.info = info
      existing.lastSeen = Date.now()
      return
    }
    this.peers.set(info.peerId, { info, lastSeen: Date.now(), consecutiveFailures: 0, blockedUntil: 0, busyUntil: 0 })
  }

  touch (peerId: string): void {
    const record = this.peers.get(peerId)
    if (record != null) {
      record.lastSeen = Date.now()
    }
  }

  get (peerId: string): PeerInfo | undefined {
    return this.peers.get(peerId)?.info
  }

  /** A transfer from `peerId` succeeded or failed. */
  recordTransfer (peerId: string, ok: boolean): void {
    const record = this.peers.get(peerId)
    if (record == null) {
      return
    }
    if (ok) {
      record.consecutiveFailures = 0
      return
    }
    record.consecutiveFailures++
    if (record.consecutiveFailures >= this.failureLimit) {
      record.blockedUntil = Date.now() + this.cooldown
      record.consecutiveFailures = 0
    }
  }

  /** A peer turned a requester away: all its upload slots were taken. Load, not a fault. */
  recordBusy (peerId: string): void {
    const record = this.peers.get(peerId)
    if (record != null) {
      record.busyUntil = Date.now() + this.busyBackoff
    }
  }

  /** Whether the peer turned someone away for want of upload slots a moment ago. */
  isBusy (peerId: string): boolean {
    return (this.peers.get(peerId)?.busyUntil ?? 0) > Date.now()
  }

  /** Whether the peer may be offered as a piece source now. */
  isUsable (peerId: string): boolean {
    const record = this.peers.get(peerId)
    const now = Date.now()
    return record != null && record.blockedUntil <= now && record.busyUntil <= now && record.info.addrs.length > 0
  }

  remove (peerId: string): boolean {
    return this.peers.delete(peerId)
  }

  /** Forgets peers silent for longer than the ttl; returns their ids. */
  expire (now = Date.now()): string[] {
    const gone: string[] = []
    for (const [id, record] of this.peers) {
      if (now - record.lastSeen > this.ttl) {
        this.peers.delete(id)
        gone.push(id)
      }
    }
    return gone
  }

  get size (): number {
    return this.peers.size
  }
}
