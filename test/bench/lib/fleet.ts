import { mkdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { type GeneratedImage } from '../../harness/image.ts'
import { parseSamples, scrape, type Samples } from '../../harness/metrics.ts'
import { run, type ManagedProcess } from '../../harness/processes.ts'
import { pushImage, startDockerRegistry } from '../../harness/registry.ts'
import { startDaemon, startSupernode, type SupernodeHandle } from '../../harness/swarm.ts'
import { awaitKillMoment, daemonVictims, KILL_MOMENT, killAll, supernodesFor, type FaultOutcome, type FaultPlan } from './faults.ts'
import { TestNetwork, type NetNode } from './netns.ts'
import { cpuSeconds, peakRss, threadCpuSeconds } from './proc-stats.ts'
import { shoalStats, type ShoalRunStats, type ShoalSamples } from './shoal-stats.ts'
import { supernodeVictim, type VictimBlob } from './supernode-victim.ts'
import type { Teardown } from './teardown.ts'

export const MODES = ['direct', 'cache', 'shoal'] as const
export type Mode = typeof MODES[number]

export const MODE_LABELS: Record<Mode, string> = {
  direct: 'straight from the origin',
  cache: 'pull-through cache',
  shoal: 'Shoal'
}

export interface FleetInit {
  dir: string
  /** Host namespaces to make: the largest fleet any mode runs with */
  hosts: number
  /** Link rates, bytes per second each way */
  hostRate: number
  originRate: number
  /** The supernode's link, and the pull-through cache's */
  supernodeRate: number
  /** Supernode namespaces to make (each on its own link of `supernodeRate`): the most any run starts. @default 1 */
  supernodes?: number
  /** Extra flags for every daemon */
  daemonArgs?: string[]
  /** Extra flags for the supernode */
  supernodeArgs?: string[]
  /** Flags for node in the Shoal processes, such as --cpu-prof */
  nodeArgs?: string[]
  /**
   * IDCs the hosts are split into (host i in IDC i mod idcs, each daemon told its `--idc`);
   * the origin, supernodes and cache sit in IDC 0. @default 1
   */
  idcs?: number
  /** Rate of each link between IDC 0 and another IDC, bytes per second each way (with idcs > 1) */
  interIdcRate?: number
  /** Give each daemon its `--idc` (with idcs > 1). @default true */
  idcLabels?: boolean
  keep: boolean
}

export type { ShoalRunStats }

export interface ModeRun {
  mode: Mode
  hosts: number
  /** Completion time per host, seconds, in host order; null for a host whose pull failed or that a fault killed */
  seconds: Array<number | null>
  /** Failed pulls of the hosts no fault hit (a fault's victims are in `fault.victimPulls`) */
  failures: string[]
  /** The fault injected, if any; Shoal's stats and CPU then cover the survivors only */
  fault?: FaultOutcome
  /** Supernodes the Shoal run started */
  supernodes?: number
  /** Bytes the origin sent on its link during the run (headers included) */
  originEgressBytes: number
  /** Blob GETs the origin answered during the run */
  originBlobGets: number
  /** Bytes sent across the inter-IDC links during the run, both directions (with several IDCs) */
  interIdcBytes?: number
  shoal?: ShoalRunStats
}

function totalCpuSeconds (pids: Array<number | undefined>): number {
  let sum = 0
  for (const pid of pids) {
    sum += cpuSeconds(pid)
  }
  return sum
}

const ORIGIN_PORT = 5000
const SUPERNODE_PORT = 8002
const MIRROR = '127.0.0.1:65001'

/**
 * A fleet of test hosts pulling one image at once, in one of three ways: straight from
 * the origin, through a Distribution pull-through cache, or through Shoal. The origin
 * (Debian's docker-registry), the supernode and the cache each sit on their own shaped
 * link; every host runs skopeo, and for Shoal its own daemon.
 */
export class Fleet {
  private readonly init: FleetInit
  private readonly teardown: Teardown
  private readonly net: TestNetwork
  private origin?: NetNode
  private readonly supernodeHosts: NetNode[] = []
  private cacheHost?: NetNode
  private readonly hostNodes: NetNode[] = []
  private originLog = ''

  constructor (init: FleetInit, teardown: Teardown) {
    this.init = init
    this.teardown = teardown
    this.net = new TestNetwork(teardown)
  }

  get originUrl (): string {
    return `http://${this.origin?.address ?? ''}:${ORIGIN_PORT}`
  }

  async setup (): Promise<void> {
    const { init } = this
    await this.net.create()
    if ((init.idcs ?? 1) > 1) {
      await this.net.addIdcs(init.idcs ?? 1, init.interIdcRate ?? init.hostRate)
    }
    this.origin = await this.net.addNode('origin', '198.18.0.2', init.originRate)
    // the first supernode at .3, the second at .5 (.4 is the cache's)
    for (let i = 0; i < (init.supernodes ?? 1); i++) {
      this.supernodeHosts.push(await this.net.addNode(i === 0 ? 'sn' : `sn${i + 1}`, `198.18.0.${i === 0 ? 3 : 4 + i}`, init.supernodeRate))
    }
    this.cacheHost = await this.net.addNode('cache', '198.18.0.4', init.supernodeRate)
    for (let i = 1; i <= init.hosts; i++) {
      this.hostNodes.push(await this.net.addNode(`h${i}`, `198.18.1.${i}`, init.hostRate, (i - 1) % (init.idcs ?? 1)))
    }
    const registry = await startDockerRegistry(join(init.dir, 'origin'), { listen: `${this.origin.address}:${ORIGIN_PORT}`, exec: this.wrap(this.origin) })
    this.teardown.add('origin registry', registry.stop)
    this.originLog = registry.logFile
  }

  /** Pushes the image to the origin, over the control link. */
  async push (image: GeneratedImage): Promise<void> {
    await pushImage(this.originUrl, image)
  }

  private wrap (node: NetNode): (command: string, args: string[]) => { command: string, args: string[] } {
    return (command, args) => this.net.command(node, command, args)
  }

  /** Each pull's timeout */
  private pullTimeoutMs (image: GeneratedImage, hosts: number): number {
    return Math.max(120_000, Math.ceil(image.layerBytes / this.init.hostRate * 1000) * hosts)
  }

  /** Every host pulls `image` from `registry` with skopeo, all starting at once. */
  private async pullAll (hosts: NetNode[], registry: string, image: GeneratedImage, dir: string): Promise<Array<{ seconds: number | null, error: string | undefined }>> {
    // each pull is bounded by its timeout
    const timeoutMs = this.pullTimeoutMs(image, hosts.length)
    const started = performance.now()
    return Promise.all(hosts.map(async (host) => {
      const out = join(dir, host.name)
      await mkdir(out, { recursive: true })
      const { command, args } = this.net.command(host, 'skopeo', [
        'copy', '--quiet', '--src-tls-verify=false', `docker://${registry}/${image.name}:${image.tag}`, `dir:${out}`
      ])
      const res = await run(command, args, { timeoutMs })
      const seconds = (performance.now() - started) / 1000
      return res.code === 0 ? { seconds, error: undefined } : { seconds: null, error: `${host.name}: skopeo exited ${res.code}: ${res.stderr.trim().split('\n').at(-1) ?? ''}` }
    }))
  }

  /**
   * Runs one mode with the first `n` hosts, all starting at once; tears down what the
   * mode started. With `warmup`, Shoal's hosts first pull that image through their
   * daemons (not measured): a release reaches daemons that have been running for days,
   * not processes that have yet to compile their hot code. With `fault` (Shoal only),
   * the fault is injected once the pulls are under way (`faults.ts`), and the victims'
   * pulls, expected to fail, are reported apart from the survivors'. Shoal starts
   * `supernodes` supernodes (default: what the fault needs, else one), every daemon
   * given all of them.
   */
  async runMode (mode: Mode, n: number, image: GeneratedImage, warmup?: GeneratedImage, fault?: FaultPlan, supernodes = supernodesFor(fault)): Promise<ModeRun> {
    if (fault != null && mode !== 'shoal') {
      throw new Error(`fault ${fault.kind} needs the Shoal mode`)
    }
    if (mode === 'shoal' && supernodes > this.supernodeHosts.length) {
      throw new Error(`${supernodes} supernodes, but the fleet was set up with ${this.supernodeHosts.length}`)
    }
    const dir = join(this.init.dir, `${mode}-${n}${fault == null ? '' : `-${fault.kind}`}${mode === 'shoal' && supernodes > 1 ? `-${supernodes}sn` : ''}`)
    await mkdir(dir, { recursive: true })
    const hosts = this.hostNodes.slice(0, n)
    const victims = new Set(fault?.kind === 'kill-daemons' ? daemonVictims(n, fault.fraction) : [])
    // what the run measures: the hosts no fault hits (all of them without a fault)
    const measured = hosts.filter((_, i) => !victims.has(i))
    const stops: Array<() => Promise<void>> = []
    try {
      let registry: string
      let daemons: ManagedProcess[] = []
      const sns: SupernodeHandle[] = []
      if (mode === 'direct') {
        registry = `${this.origin!.address}:${ORIGIN_PORT}`
      } else if (mode === 'cache') {
        const cache = await startDockerRegistry(join(dir, 'cache'), { listen: `${this.cacheHost!.address}:${ORIGIN_PORT}`, proxyRemoteUrl: this.originUrl, exec: this.wrap(this.cacheHost!) })
        stops.push(cache.stop)
        registry = `${this.cacheHost!.address}:${ORIGIN_PORT}`
      } else {
        const nodeArgs = this.init.nodeArgs ?? []
        for (const [i, host] of this.supernodeHosts.slice(0, supernodes).entries()) {
          const sn = await startSupernode({
            dir: join(dir, i === 0 ? 'supernode' : `supernode${i + 1}`),
            allowSource: [this.originUrl],
            listen: `${host.address}:${SUPERNODE_PORT}`,
            p2pListen: `/ip4/${host.address}/tcp/8003`,
            exec: this.wrap(host),
            extraArgs: this.init.supernodeArgs ?? [],
            nodeArgs
          })
          sns.push(sn)
          stops.push(async () => { await sn.proc.stop(15_000) })
        }
        daemons = []
        // started a few at a time: two cores, and each start compiles the same code
        for (let i = 0; i < hosts.length; i += 4) {
          const batch = await Promise.all(hosts.slice(i, i + 4).map(async host => startDaemon({
            dir,
            name: host.name,
            registry: this.originUrl,
            supernode: sns.map(sn => sn.url),
            listen: MIRROR,
            p2pListen: `/ip4/${host.address}/tcp/65002`,
            exec: this.wrap(host),
            extraArgs: [...this.init.daemonArgs ?? [], ...((this.init.idcs ?? 1) > 1 && this.init.idcLabels !== false ? ['--idc', `idc-${host.idc}`] : [])],
            nodeArgs
          })))
          daemons.push(...batch.map(d => d.proc))
        }
        stops.push(async () => { await Promise.allSettled(daemons.map(async d => { await d.stop(15_000) })) })
        registry = MIRROR
        if (warmup != null) {
          const warm = await this.pullAll(hosts, MIRROR, warmup, join(dir, 'warmup'))
          const failed = warm.find(r => r.error != null)
          if (failed != null) {
            throw new Error(`warm-up pull failed: ${failed.error ?? ''}`)
          }
        }
      }
      // the supernode a kill-supernode fault kills, chosen before the pulls start
      const snChoice = fault?.kind === 'kill-supernode' ? this.chooseSupernode(image, sns) : undefined
      // what the run measures: the supernodes and daemons no fault kills
      const liveSns = sns.filter((_, i) => i !== snChoice?.index)
      const snPids = liveSns.map(sn => sn.proc.child.pid)
      const daemonPids = daemons.filter((_, i) => !victims.has(i)).map(d => d.child.pid)

      const metricsBefore = mode === 'shoal' ? await this.scrapeShoal(measured, liveSns) : undefined
      const egressBefore = await this.net.txBytes(this.origin!)
      const interIdcBefore = await this.net.interIdcBytes()
      const logBefore = (await stat(this.originLog)).size
      const cpuBefore = totalCpuSeconds([...snPids, ...daemonPids])
      const threadsBefore = daemonPids.map(threadCpuSeconds)
      const supernodeCpuBefore = totalCpuSeconds(snPids)
      // every host starts at once, as in a release
      let ended = false
      const pulls = this.pullAll(hosts, registry, image, join(dir, 'pulled')).finally(() => { ended = true })
      const killed = fault?.kind === 'kill-supernode' ? [sns[snChoice!.index]!.proc] : daemons.filter((_, i) => victims.has(i))
      const names = fault?.kind === 'kill-supernode' ? [snChoice!.index === 0 ? 'sn' : `sn${snChoice!.index + 1}`] : [...victims].map(i => hosts[i]!.name)
      const injection = fault == null ? undefined : this.inject(fault, daemons, killed, names, image, () => ended)
      const results = await pulls
      const outcome = await injection
      const cpuAfter = totalCpuSeconds([...snPids, ...daemonPids])
      const supernodeCpu = totalCpuSeconds(snPids) - supernodeCpuBefore
      const rss = { supernode: Math.max(0, ...snPids.map(peakRss)), daemons: Math.max(0, ...daemonPids.map(peakRss)) }
      const daemonCpuByThread: Record<string, number> = {}
      daemonPids.forEach((pid, i) => {
        for (const [thread, seconds] of Object.entries(threadCpuSeconds(pid))) {
          daemonCpuByThread[thread] = (daemonCpuByThread[thread] ?? 0) + seconds - (threadsBefore[i]?.[thread] ?? 0)
        }
      })
      const egress = await this.net.txBytes(this.origin!) - egressBefore
      const interIdc = await this.net.interIdcBytes() - interIdcBefore
      const blobGets = await this.countBlobGets(logBefore)

      const runResult: ModeRun = {
        mode,
        hosts: n,
        seconds: results.map((r, i) => victims.has(i) ? null : r.seconds),
        failures: results.flatMap((r, i) => r.error != null && !victims.has(i) ? [r.error] : []),
        originEgressBytes: egress,
        originBlobGets: blobGets,
        ...((this.init.idcs ?? 1) > 1 ? { interIdcBytes: interIdc } : {})
      }
      if (outcome != null) {
        outcome.victimPulls = [...victims].map(i => ({ host: hosts[i]!.name, ...results[i]! }))
        if (snChoice != null) {
          outcome.choice = `${outcome.victims[0]!} (${sns[snChoice.index]!.url}) ${snChoice.reason}`
        }
        runResult.fault = outcome
      }
      if (mode === 'shoal') {
        runResult.supernodes = supernodes
        runResult.shoal = { ...shoalStats(metricsBefore!, await this.scrapeShoal(measured, liveSns), cpuAfter - cpuBefore, supernodeCpu), daemonPeakRss: rss.daemons, supernodePeakRss: rss.supernode, daemonCpuByThread }
      }
      return runResult
    } finally {
      for (const stop of stops.reverse()) {
        await stop().catch(() => {})
      }
      if (!this.init.keep) {
        await rm(dir, { recursive: true, force: true })
      }
    }
  }

  /** Which of `sns` a kill-supernode fault kills: see `supernodeVictim`. */
  private chooseSupernode (image: GeneratedImage, sns: SupernodeHandle[]): ReturnType<typeof supernodeVictim> {
    const blob = (b: { digest: string, size: number }, layer: boolean): VictimBlob => ({ ...b, url: `${this.originUrl}/v2/${image.name}/blobs/${b.digest}`, layer })
    return supernodeVictim([...image.layers.map(l => blob(l, true)), blob(image.config, false)], sns.map(sn => sn.url))
  }

  /**
   * Injects `fault` into the running pulls: waits for the kill moment, then SIGKILLs
   * `killed` (named `names`) and waits until they are gone. Bounded by the pulls' timeout.
   */
  private async inject (fault: FaultPlan, daemons: ManagedProcess[], killed: ManagedProcess[], names: string[], image: GeneratedImage, ended: () => boolean): Promise<FaultOutcome> {
    const atSeconds = await awaitKillMoment({
      pids: daemons.map(d => d.child.pid),
      threshold: (image.layerBytes + image.config.size) / 3,
      deadlineMs: this.pullTimeoutMs(image, daemons.length),
      ended,
      signal: this.teardown.signal
    })
    if (atSeconds != null) {
      await killAll(killed)
    }
    return { kind: fault.kind, plan: fault, victims: names, trigger: KILL_MOMENT, atSeconds, injected: atSeconds != null, victimPulls: [] }
  }

  /** Blob GETs in the origin's access log since byte `from`. */
  private async countBlobGets (from: number): Promise<number> {
    const text = (await readFile(this.originLog)).subarray(from).toString('utf8')
    return [...text.matchAll(/"GET \/v2\/\S+\/blobs\/sha256:[a-f0-9]{64} HTTP\/[\d.]+" (\d{3})/g)].filter(m => m[1] === '200' || m[1] === '206').length
  }

  /** The supernodes' and every daemon's metrics now. */
  private async scrapeShoal (hosts: NetNode[], supernodes: SupernodeHandle[]): Promise<ShoalSamples> {
    return { supernodes: await Promise.all(supernodes.map(async sn => scrape(`${sn.url}/metrics`))), daemons: await Promise.all(hosts.map(async host => this.scrapeDaemon(host))) }
  }

  /** A daemon's metrics, read from inside its host (the mirror listens on loopback only). */
  private async scrapeDaemon (host: NetNode): Promise<Samples> {
    const { command, args } = this.net.command(host, 'curl', ['-sS', '--max-time', '10', `http://${MIRROR}/metrics`])
    const res = await run(command, args, { timeoutMs: 15_000 })
    if (res.code !== 0) {
      throw new Error(`metrics of ${host.name}: ${res.stderr.trim()}`)
    }
    return parseSamples(res.stdout)
  }
}
