import { readdir } from 'node:fs/promises'
import { run } from '../../harness/processes.ts'
import type { Teardown } from './teardown.ts'

/** Every namespace a benchmark makes is named `<NS_PREFIX><pid>-<node>`. */
const NS_PREFIX = 'shoalb'

/** The subnet every test host lives in: 198.18.0.0/15 is set aside for benchmarks (RFC 2544). */
export const SUBNET_PREFIX = 16
/** Where the benchmark process itself sits on the hub, to push images and read metrics. */
const CONTROL_ADDRESS = '198.18.255.254'

export interface NetNode {
  name: string
  /** The node's network namespace */
  ns: string
  address: string
  /** The IDC (bridge) it sits in; 0 unless the network has several */
  idc: number
  /** Link rate in bytes per second, each direction; null when unshaped */
  rate: number | null
}

async function sh (command: string, args: string[]): Promise<string> {
  const res = await run(command, args, { timeoutMs: 30_000 })
  if (res.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${res.code}): ${res.stderr.trim()}`)
  }
  return res.stdout
}

/**
 * Shapes egress of `dev` (in namespace `ns`) to `rate` bytes per second with a token
 * bucket: a burst of 20 ms (at least 64 KiB, so GSO packets pass whole) and at most
 * 50 ms of queue, like a switch port rather than a deep buffer.
 */
async function shape (ns: string, dev: string, rate: number): Promise<void> {
  const burst = Math.max(64 * 1024, Math.round(rate / 50))
  await sh('tc', ['-n', ns, 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${Math.round(rate * 8 / 1000)}kbit`, 'burst', String(burst), 'latency', '50ms'])
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function listNamespaces (): Promise<string[]> {
  try {
    return await readdir('/run/netns')
  } catch {
    return []
  }
}

/** Kills what runs in a namespace and deletes it (its veth ends go with it). */
export async function deleteNamespace (ns: string): Promise<void> {
  const pids = (await run('ip', ['netns', 'pids', ns])).stdout.split('\n').map(Number).filter(n => n > 0)
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
  await run('ip', ['netns', 'del', ns])
}

/**
 * Removes what an earlier benchmark left behind when it was killed outright (SIGKILL,
 * a crash of the machine): namespaces of ours whose benchmark process is gone.
 */
export async function removeStaleNetworks (): Promise<string[]> {
  const stale: string[] = []
  for (const ns of await listNamespaces()) {
    const pid = new RegExp(`^${NS_PREFIX}(\\d+)-`).exec(ns)?.[1]
    if (pid != null && !isAlive(Number(pid))) {
      await deleteNamespace(ns)
      stale.push(ns)
    }
  }
  return stale
}

/**
 * A switched network of test hosts on this machine: one network namespace per node,
 * each joined by a veth pair to a bridge in a hub namespace, with both directions of
 * its link shaped. The benchmark process joins the bridge unshaped, as the control
 * host. Everything is registered with the teardown as it is made.
 */
export class TestNetwork {
  private readonly id = `${NS_PREFIX}${process.pid}`
  private readonly hub = `${this.id}-hub`
  private readonly teardown: Teardown
  readonly nodes: NetNode[] = []
  /** Hub-side ends of the links between IDC 0's bridge and each other IDC's */
  private readonly interIdcLinks: string[] = []

  constructor (teardown: Teardown) {
    this.teardown = teardown
  }

  async create (): Promise<void> {
    if (process.getuid?.() !== 0) {
      throw new Error('the network benchmark needs root (network namespaces and tc)')
    }
    await sh('ip', ['netns', 'add', this.hub])
    this.teardown.add(`namespace ${this.hub}`, async () => { await deleteNamespace(this.hub) })
    await sh('ip', ['-n', this.hub, 'link', 'add', 'br0', 'type', 'bridge'])
    await sh('ip', ['-n', this.hub, 'link', 'set', 'br0', 'up'])
    // the control link: the root namespace's end goes when the hub (holding its peer) does
    const control = `${this.id}c`.slice(-15)
    await sh('ip', ['link', 'add', control, 'type', 'veth', 'peer', 'name', 'v-control', 'netns', this.hub])
    this.teardown.add(`link ${control}`, async () => { await run('ip', ['link', 'del', control]) })
    await sh('ip', ['-n', this.hub, 'link', 'set', 'v-control', 'master', 'br0', 'up'])
    await sh('ip', ['addr', 'add', `${CONTROL_ADDRESS}/${SUBNET_PREFIX}`, 'dev', control])
    await sh('ip', ['link', 'set', control, 'up'])
  }

  /**
   * Splits the switch into `idcs` IDCs: IDC 0 is `br0` (where the control link is),
   * IDC i > 0 its own bridge `br<i>`, joined to `br0` by one link of `rate` bytes per
   * second each way: what crosses between IDCs shares it, as a scarce inter-DC link.
   */
  async addIdcs (idcs: number, rate: number): Promise<void> {
    for (let i = 1; i < idcs; i++) {
      await sh('ip', ['-n', this.hub, 'link', 'add', `br${i}`, 'type', 'bridge'])
      await sh('ip', ['-n', this.hub, 'link', 'set', `br${i}`, 'up'])
      const [a, b] = [`x0-${i}`, `x${i}-0`]
      await sh('ip', ['-n', this.hub, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b])
      await sh('ip', ['-n', this.hub, 'link', 'set', a, 'master', 'br0', 'up'])
      await sh('ip', ['-n', this.hub, 'link', 'set', b, 'master', `br${i}`, 'up'])
      await shape(this.hub, a, rate)
      await shape(this.hub, b, rate)
      this.interIdcLinks.push(a, b)
    }
  }

  /** Bytes sent across the inter-IDC links so far, both directions summed (headers included). */
  async interIdcBytes (): Promise<number> {
    let sum = 0
    for (const dev of this.interIdcLinks) {
      sum += Number((await sh('ip', ['netns', 'exec', this.hub, 'cat', `/sys/class/net/${dev}/statistics/tx_bytes`])).trim())
    }
    return sum
  }

  /** Adds a node with its own namespace and a link of `rate` bytes per second each way (null: unshaped), in IDC `idc`. */
  async addNode (name: string, address: string, rate: number | null, idc = 0): Promise<NetNode> {
    if (!/^198\.1[89]\.\d{1,3}\.\d{1,3}$/.test(address)) {
      throw new Error(`${address} is outside 198.18.0.0/15, the only range benchmarks may use`)
    }
    const ns = `${this.id}-${name}`
    await sh('ip', ['netns', 'add', ns])
    this.teardown.add(`namespace ${ns}`, async () => { await deleteNamespace(ns) })
    const hubEnd = `v-${name}`.slice(0, 15)
    await sh('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', hubEnd, 'netns', this.hub])
    await sh('ip', ['-n', this.hub, 'link', 'set', hubEnd, 'master', `br${idc}`, 'up'])
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
    await sh('ip', ['-n', ns, 'addr', 'add', `${address}/${SUBNET_PREFIX}`, 'dev', 'eth0'])
    await sh('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
    if (rate != null) {
      await shape(ns, 'eth0', rate) // the node's upload
      await shape(this.hub, hubEnd, rate) // its download
    }
    const node = { name, ns, address, rate, idc }
    this.nodes.push(node)
    return node
  }

  /** A command line that runs `command` inside the node's namespace. */
  command (node: NetNode, command: string, args: string[]): { command: string, args: string[] } {
    return { command: 'ip', args: ['netns', 'exec', node.ns, command, ...args] }
  }

  /** Bytes the node has sent on its link so far (IP and TCP headers included). */
  async txBytes (node: NetNode): Promise<number> {
    return Number((await sh('ip', ['netns', 'exec', node.ns, 'cat', '/sys/class/net/eth0/statistics/tx_bytes'])).trim())
  }
}
