import { taskIdFor } from '../../../packages/core/src/task-id.ts'
import { SupernodeRing } from '../../../packages/dfget/src/download/supernode-ring.ts'

export interface VictimBlob {
  digest: string
  size: number
  /** The blob's URL at the origin (the task id of a digested blob does not depend on it) */
  url: string
  /** A layer (true) or the config */
  layer: boolean
}

export interface SupernodeChoice {
  /** Index of the victim among `ids` */
  index: number
  /** Per supernode: layers and blob bytes it owns (is every daemon's first choice for) */
  owned: Array<{ id: string, layers: number, bytes: number }>
  /** How the victim was chosen, for the report */
  reason: string
}

/**
 * The supernode a `kill-supernode` fault kills: the one that owns the most of the
 * image's layers, by the very ranking the daemons use (`SupernodeRing` over the
 * supernodes' addresses as the daemons are given them, on the task id the registry
 * mirror keys a blob by: its digest). Ties go to the one owning more blob bytes
 * (layers and config), then to the first. Killing the owner makes the daemons move
 * those downloads to the other supernode mid-pull, the failover the fault exercises.
 */
export function supernodeVictim (blobs: VictimBlob[], ids: string[]): SupernodeChoice {
  const ring = new SupernodeRing(ids.map(id => ({ id })))
  const owned = ids.map(id => ({ id, layers: 0, bytes: 0 }))
  for (const blob of blobs) {
    const owner = ring.owner(taskIdFor({ url: blob.url, digest: blob.digest }))
    const o = owned[ids.indexOf(owner.id)]!
    o.layers += blob.layer ? 1 : 0
    o.bytes += blob.size
  }
  let index = 0
  owned.forEach((o, i) => {
    const best = owned[index]!
    if (o.layers > best.layers || (o.layers === best.layers && o.bytes > best.bytes)) {
      index = i
    }
  })
  const layers = blobs.filter(b => b.layer).length
  const reason = `owns ${owned[index]!.layers} of ${layers} layers (${owned.map(o => `${o.id}: ${o.layers} layers, ${(o.bytes / 2 ** 20).toFixed(1)} MiB`).join('; ')}) by the daemons' rendezvous ranking`
  return { index, owned, reason }
}
