import { mkdir, readFile, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { type GeneratedImage } from '../../harness/image.ts'
import { parseSamples, sample, scrape, type Samples } from '../../harness/metrics.ts'
import { run, type ManagedProcess } from '../../harness/processes.ts'
import { pushImage, startDockerRegistry } from '../../harness/registry.ts'
import { startDaemon, startSupernode } from '../../harness/swarm.ts'
import { awaitKillMoment, daemonVictims, KILL_MOMENT, killAll, type FaultOutcome, type FaultPlan } from './faults.ts'
import { TestNetwork, type NetNode } from './netns.ts'
import { cpuSeconds, peakRss, threadCpuSeconds } from './proc-stats.ts'
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
  /** Extra flags for every daemon */
  daemonArgs?: string[]
  /** Extra flags for the supernode */
  supernodeArgs?: string[]
  /** Flags for node in the Shoal processes, such as --cpu-prof */
  nodeArgs?: string[]
  keep: boolean
}

export interface ShoalRunStats {
  /** Piece bytes the supernode sent */
  supernodeUploadBytes: number
  /** Bytes into the hosts, by source, summed over hosts */
  bytesBySource: { origin: number, supernode: number, peer: number }
  /** Verified bytes the daemons streamed to their clients (skopeo), summed over hosts */
  servedBytes: number
  /** shoal_dfget_back_to_source_total by reason, summed over hosts */
  backToSource: Record<string, number>
  /** Failed piece transfers by error code, summed over hosts */
  pieceErrors: Record<string, number>
  /** CPU seconds of the supernode and every daemon during the pulls */
  cpuSeconds: number
  /** The supernode's share of cpuSeconds */
  supernodeCpuSeconds: number
  /** The daemons' CPU seconds by kind of thread (MainThread, V8Worker, libuv-worker, ...) */
  daemonCpuByThread: Record<string, number>
  /** Highest peak RSS (VmHWM) of any daemon, and the supernode's, bytes */
  daemonPeakRss: number
  supernodePeakRss: number
}

export interface ModeRun {
  mode: Mode
  hosts: number
  /** Completion time per host, seconds, in host order; null for a host whose pull failed or that a fault killed */
  seconds: Array<number | null>
  /** Failed pulls of the hosts no fault hit (a fault's victims are in `fault.victimPulls`) */
  failures: string[]
  /** The fault injected, if any; Shoal's stats and CPU then cover the survivors only */
  fault?: FaultOutcome
  /** Bytes the origin sent on its link during the run (headers included) */
  originEgressBytes: number
  /** Blob GETs the origin answered during the run */
  originBlobGets: number
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
  private supernodeHost?: NetNode
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
    this.origin = await this.net.addNode('origin', '198.18.0.2', init.originRate)
    this.supernodeHost = await this.net.addNode('sn', '198.18.0.3', init.supernodeRate)
    this.cacheHost = await this.net.addNode('cache', '198.18.0.4', init.supernodeRate)
    for (let i = 1; i <= init.hosts; i++) {
      this.hostNodes.push(await this.net.addNode(`h${i}`, `198.18.1.${i}`, init.hostRate))
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
   * pulls, expected to fail, are reported apart from the survivors'.
   */
  async runMode (mode: Mode, n: number, image: GeneratedImage, warmup?: GeneratedImage, fault?: FaultPlan): Promise<ModeRun> {
    if (fault != null && mode !== 'shoal') {
      throw new Error(`fault ${fault.kind} needs the Shoal mode`)
    }
    const dir = join(this.init.dir, fault == null ? `${mode}-${n}` : `${mode}-${n}-${fault.kind}`)
    await mkdir(dir, { recursive: true })
    const hosts = this.hostNodes.slice(0, n)
    const victims = new Set(fault == null ? [] : daemonVictims(n, fault.fraction))
    // what the run measures: the hosts no fault hits (all of them without a fault)
    const measured = hosts.filter((_, i) => !victims.has(i))
    const stops: Array<() => Promise<void>> = []
    try {
      let registry: string
      let shoalPids: Array<number | undefined> = []
      let daemons: ManagedProcess[] = []
      let supernodeUrl = ''
      if (mode === 'direct') {
        registry = `${this.origin!.address}:${ORIGIN_PORT}`
      } else if (mode === 'cache') {
        const cache = await startDockerRegistry(join(dir, 'cache'), { listen: `${this.cacheHost!.address}:${ORIGIN_PORT}`, proxyRemoteUrl: this.originUrl, exec: this.wrap(this.cacheHost!) })
        stops.push(cache.stop)
        registry = `${this.cacheHost!.address}:${ORIGIN_PORT}`
      } else {
        const nodeArgs = this.init.nodeArgs ?? []
        const supernode = await startSupernode({
          dir: join(dir, 'supernode'),
          allowSource: [this.originUrl],
          listen: `${this.supernodeHost!.address}:${SUPERNODE_PORT}`,
          p2pListen: `/ip4/${this.supernodeHost!.address}/tcp/8003`,
          exec: this.wrap(this.supernodeHost!),
          extraArgs: this.init.supernodeArgs ?? [],
          nodeArgs
        })
        stops.push(async () => { await supernode.proc.stop(15_000) })
        supernodeUrl = supernode.url
        daemons = []
        // started a few at a time: two cores, and each start compiles the same code
        for (let i = 0; i < hosts.length; i += 4) {
          const batch = await Promise.all(hosts.slice(i, i + 4).map(async host => startDaemon({
            dir,
            name: host.name,
            registry: this.originUrl,
            supernode: supernode.url,
            listen: MIRROR,
            p2pListen: `/ip4/${host.address}/tcp/65002`,
            exec: this.wrap(host),
            extraArgs: this.init.daemonArgs ?? [],
            nodeArgs
          })))
          daemons.push(...batch.map(d => d.proc))
        }
        stops.push(async () => { await Promise.allSettled(daemons.map(async d => { await d.stop(15_000) })) })
        shoalPids = [supernode.proc.child.pid, ...daemons.filter((_, i) => !victims.has(i)).map(d => d.child.pid)]
        registry = MIRROR
        if (warmup != null) {
          const warm = await this.pullAll(hosts, MIRROR, warmup, join(dir, 'warmup'))
          const failed = warm.find(r => r.error != null)
          if (failed != null) {
            throw new Error(`warm-up pull failed: ${failed.error ?? ''}`)
          }
        }
      }

      const metricsBefore = mode === 'shoal' ? await this.scrapeShoal(measured, supernodeUrl) : undefined
      const egressBefore = await this.net.txBytes(this.origin!)
      const logBefore = (await stat(this.originLog)).size
      const cpuBefore = totalCpuSeconds(shoalPids)
      const threadsBefore = shoalPids.slice(1).map(threadCpuSeconds)
      const supernodeCpuBefore = cpuSeconds(shoalPids[0])
      // every host starts at once, as in a release
      let ended = false
      const pulls = this.pullAll(hosts, registry, image, join(dir, 'pulled')).finally(() => { ended = true })
      const injection = fault == null ? undefined : this.inject(fault, hosts, daemons, victims, image, () => ended)
      const results = await pulls
      const outcome = await injection
      const cpuAfter = totalCpuSeconds(shoalPids)
      const supernodeCpu = cpuSeconds(shoalPids[0]) - supernodeCpuBefore
      const rss = { supernode: peakRss(shoalPids[0]), daemons: Math.max(0, ...shoalPids.slice(1).map(peakRss)) }
      const daemonCpuByThread: Record<string, number> = {}
      shoalPids.slice(1).forEach((pid, i) => {
        for (const [thread, seconds] of Object.entries(threadCpuSeconds(pid))) {
          daemonCpuByThread[thread] = (daemonCpuByThread[thread] ?? 0) + seconds - (threadsBefore[i]?.[thread] ?? 0)
        }
      })
      const egress = await this.net.txBytes(this.origin!) - egressBefore
      const blobGets = await this.countBlobGets(logBefore)

      const runResult: ModeRun = {
        mode,
        hosts: n,
        seconds: results.map((r, i) => victims.has(i) ? null : r.seconds),
        failures: results.flatMap((r, i) => r.error != null && !victims.has(i) ? [r.error] : []),
        originEgressBytes: egress,
        originBlobGets: blobGets
      }
      if (outcome != null) {
        outcome.victimPulls = [...victims].map(i => ({ host: hosts[i]!.name, ...results[i]! }))
        runResult.fault = outcome
      }
      if (mode === 'shoal') {
        runResult.shoal = { ...this.shoalStats(metricsBefore!, await this.scrapeShoal(measured, supernodeUrl), cpuAfter - cpuBefore, supernodeCpu), daemonPeakRss: rss.daemons, supernodePeakRss: rss.supernode, daemonCpuByThread }
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

  /**
   * Injects `fault` into the running pulls: waits for the kill moment, then kills the
   * victims and waits until they are gone. Bounded by the pulls' timeout.
   */
  private async inject (fault: FaultPlan, hosts: NetNode[], daemons: ManagedProcess[], victims: Set<number>, image: GeneratedImage, ended: () => boolean): Promise<FaultOutcome> {
    const atSeconds = await awaitKillMoment({
      pids: daemons.map(d => d.child.pid),
      threshold: (image.layerBytes + image.config.size) / 3,
      deadlineMs: this.pullTimeoutMs(image, hosts.length),
      ended,
      signal: this.teardown.signal
    })
    if (atSeconds != null) {
      await killAll(daemons.filter((_, i) => victims.has(i)))
    }
    return { kind: fault.kind, plan: fault, victims: [...victims].map(i => hosts[i]!.name), trigger: KILL_MOMENT, atSeconds, injected: atSeconds != null, victimPulls: [] }
  }

  /** Blob GETs in the origin's access log since byte `from`. */
  private async countBlobGets (from: number): Promise<number> {
    const text = (await readFile(this.originLog)).subarray(from).toString('utf8')
    return [...text.matchAll(/"GET \/v2\/\S+\/blobs\/sha256:[a-f0-9]{64} HTTP\/[\d.]+" (\d{3})/g)].filter(m => m[1] === '200' || m[1] === '206').length
  }

  /** The supernode's and every daemon's metrics now. */
  private async scrapeShoal (hosts: NetNode[], supernodeUrl: string): Promise<{ supernode: Samples, daemons: Samples[] }> {
    return { supernode: await scrape(`${supernodeUrl}/metrics`), daemons: await Promise.all(hosts.map(async host => this.scrapeDaemon(host))) }
  }

  /** What the measured pull did, from metrics before and after it (the warm-up is not counted). */
  private shoalStats (before: { supernode: Samples, daemons: Samples[] }, after: { supernode: Samples, daemons: Samples[] }, cpu: number, supernodeCpu: number): Omit<ShoalRunStats, 'daemonPeakRss' | 'supernodePeakRss' | 'daemonCpuByThread'> {
    const delta = (a: Samples, b: Samples | undefined): Samples => new Map([...a].map(([k, v]) => [k, v - (b?.get(k) ?? 0)]))
    const stats: Omit<ShoalRunStats, 'daemonPeakRss' | 'supernodePeakRss' | 'daemonCpuByThread'> = {
      supernodeUploadBytes: sample(delta(after.supernode, before.supernode), 'shoal_supernode_upload_bytes_total'),
      bytesBySource: { origin: 0, supernode: 0, peer: 0 },
      servedBytes: 0,
      backToSource: {},
      pieceErrors: {},
      cpuSeconds: cpu,
      supernodeCpuSeconds: supernodeCpu
    }
    after.daemons.forEach((daemon, i) => {
      const samples = delta(daemon, before.daemons[i])
      stats.servedBytes += sample(samples, 'shoal_dfget_served_bytes_total')
      for (const source of ['origin', 'supernode', 'peer'] as const) {
        stats.bytesBySource[source] += sample(samples, 'shoal_dfget_download_bytes_total', { source })
      }
      for (const [key, value] of samples) {
        const reason = /^shoal_dfget_back_to_source_total\{reason="([^"]*)"\}$/.exec(key)?.[1]
        if (reason != null && value > 0) {
          stats.backToSource[reason] = (stats.backToSource[reason] ?? 0) + value
        }
        const piece = /^shoal_dfget_pieces_total\{source="([^"]*)",result="([^"]*)"\}$/.exec(key)
        if (piece != null && piece[2] !== 'ok' && value > 0) {
          const k = `${piece[1]}:${piece[2]}`
          stats.pieceErrors[k] = (stats.pieceErrors[k] ?? 0) + value
        }
      }
    })
    return stats
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
