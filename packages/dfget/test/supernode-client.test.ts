import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createHttpDispatcher, createP2PNode, loadOrCreatePrivateKey, SupernodeUnavailableError } from '@shoal/core'
import { SupernodeClient } from '../src/index.ts'
import { startSwarm, type TestSwarm } from './fixtures/swarm.ts'
import type { Libp2p } from 'libp2p'

describe('SupernodeClient', () => {
  let swarm: TestSwarm
  let node: Libp2p
  const dispatcher = createHttpDispatcher()

  beforeAll(async () => {
    swarm = await startSwarm('http://127.0.0.1:9', { daemons: 0 })
    const privateKey = await loadOrCreatePrivateKey(join(await mkdtemp(join(tmpdir(), 'shoal-client-')), 'peer.key'))
    node = await createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey, clusterKey: swarm.clusterKey })
  })

  afterAll(async () => {
    await node.stop()
    await swarm.stop()
    await dispatcher.close()
  })

  const self = (): { peerId: string, addrs: string[], hostname: string } => ({ peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(String), hostname: 'h' })

  it('finds the control plane from the HTTP address, and calls it over libp2p', async () => {
    const client = new SupernodeClient({ libp2p: node, dispatcher }, { address: swarm.supernode.url })
    await client.announce(self())
    expect(node.getConnections().some(c => c.remotePeer.toString() === swarm.supernode.self().peerId)).toBe(true)
  })

  it('takes a multiaddr as well', async () => {
    const client = new SupernodeClient({ libp2p: node, dispatcher }, { address: swarm.supernode.self().addrs[0]! })
    await client.announce(self())
  })

  it('tries again when a call cannot get through, and gives up after its attempts', async () => {
    let failures = 1
    let dials = 0
    const flaky: Pick<Libp2p, 'dialProtocol'> = {
      dialProtocol: async (...args: Parameters<Libp2p['dialProtocol']>) => {
        dials++
        if (failures-- > 0) {
          throw new Error('connection reset')
        }
        return node.dialProtocol(...args)
      }
    }
    const client = new SupernodeClient({ libp2p: flaky, dispatcher }, { address: swarm.supernode.self().addrs[0]!, attempts: 3 })
    await client.announce(self())
    expect(dials).toBe(2)

    failures = 10
    dials = 0
    await expect(client.announce(self())).rejects.toBeInstanceOf(SupernodeUnavailableError)
    expect(dials).toBe(3)
  })
})
