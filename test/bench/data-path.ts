/**
 * The data-path benchmark: one large layer on unshaped loopback, four ways, in one run.
 *
 *   direct  curl ← docker-registry
 *   cold    curl ← daemon A ← supernode ← docker-registry (nothing cached anywhere)
 *   peer    curl ← daemon B ← daemon A (the supernode holds it too, and is not asked)
 *   warm    curl ← daemon A, from its own store
 *
 * The client is curl piped through OpenSSL's sha256, as a runtime verifies a layer. For
 * each mode: MB/s as the client saw it, CPU seconds per GiB for every process (from
 * /proc/<pid>/stat) and summed over the Shoal processes, and at the end the daemons'
 * peak RSS.
 *
 *   ./dev bench data-path [--size-mib 1024] [--json FILE] [--keep]
 */
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { writeRandomBlob } from '../harness/image.ts'
import { daemonBytes } from '../harness/metrics.ts'
import { REPO_ROOT } from '../harness/processes.ts'
import { pushBlob, startDockerRegistry } from '../harness/registry.ts'
import { startDaemon, startSupernode, type DaemonHandle } from '../harness/swarm.ts'
import { fetchAndHash } from './lib/curl.ts'
import { CpuMeter, peakRss, threadCpuSeconds } from './lib/proc-stats.ts'
import { machineSummary } from './lib/machine.ts'
import { textTable } from './lib/stats.ts'
import { Teardown } from './lib/teardown.ts'

const MiB = 1024 * 1024
const GiB = 1024 * MiB

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '1024' },
    runs: { type: 'string', default: '3' },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    'node-args': { type: 'string', default: '' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})
if (values.help) {
  process.stdout.write([
    'usage: ./dev bench data-path [--size-mib 1024] [--runs 3] [--json FILE] [--keep] [--profile] [--node-args ARGS]',
    '  --size-mib   size of the one layer (16..4096)',
    '  --runs       repeat the four modes this often, each time with a new supernode and daemons; medians are reported (1..9)',
    '  --json       also write the results here',
    '  --keep       leave logs and data in .shoal/bench/<run>/',
    '  --profile    V8 CPU profiles of the Shoal processes into <run>/profiles (implies --keep)',
    '  --node-args  flags for node in the Shoal processes, space-separated, such as --trace-gc (implies --keep)',
    ''
  ].join('\n'))
  process.exit(0)
}
const size = Number(values['size-mib']) * MiB
const runs = Number(values.runs)
if (!Number.isInteger(size / MiB) || size < 16 * MiB || size > 4096 * MiB || !Number.isInteger(runs) || runs < 1 || runs > 9) {
  process.stderr.write('data-path: --size-mib must be a whole number from 16 to 4096, --runs from 1 to 9\n')
  process.exit(2)
}

const say = (line = ''): void => { process.stdout.write(`${line}\n`) }
const dir = join(REPO_ROOT, '.shoal', 'bench', `data-path-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`)
const nodeArgs = [...values.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'profiles')}`] : [], ...values['node-args'].split(' ').filter(a => a !== '')]
const keep = values.keep || nodeArgs.length > 0
const teardown = new Teardown()
teardown.installExitHandlers()

interface ModeResult {
  mode: string
  mbPerSecond: number
  seconds: number
  /** CPU seconds per GiB moved, by process */
  cpuPerGiB: Record<string, number>
  /** Summed over supernode and daemons */
  shoalCpuPerGiB: number
  /** The busiest Shoal process's CPU seconds per GiB, by kind of thread */
  busiestByThread?: { process: string, threads: Record<string, number> }
}

let failed = false
try {
  await mkdir(dir, { recursive: true })
  teardown.add('run directory', async () => { if (!keep && (!failed || teardown.signal.aborted)) { await rm(dir, { recursive: true, force: true }) } })
  const registry = await startDockerRegistry(join(dir, 'registry'))
  teardown.add('registry', registry.stop)
  const blob = await writeRandomBlob(join(dir, 'layer.bin'), size)
  const name = 'bench/data-path'
  await pushBlob(registry.url, name, blob)
  await rm(blob.path)
  const path = `/v2/${name}/blobs/${blob.digest}`
  say(`layer: ${size / MiB} MiB of random bytes in Debian's docker-registry; client: curl | openssl dgst -sha256 (verified, not stored)`)

  const modes = ['direct (docker-registry)', 'cold through Shoal', 'peer to peer', 'warm (own store)'] as const
  const samples = new Map<string, ModeResult[]>(modes.map(m => [m, []]))
  const rss = { 'daemon A': 0, 'daemon B': 0, supernode: 0 }
  let peerBytes = { origin: 0, supernode: 0, peer: 0 }
  for (let run = 1; run <= runs; run++) {
    teardown.signal.throwIfAborted()
    // a new supernode and daemons each run: every cold run is cold
    const runDir = join(dir, `run-${run}`)
    const supernode = await startSupernode({ dir: join(runDir, 'supernode'), allowSource: [registry.url], nodeArgs })
    const stopSupernode = async (): Promise<void> => { await supernode.proc.stop() }
    teardown.add(`supernode of run ${run}`, stopSupernode)
    const daemons: DaemonHandle[] = []
    for (const host of ['host-a', 'host-b']) {
      const d = await startDaemon({ dir: runDir, name: host, registry: registry.url, supernode: supernode.url, nodeArgs })
      teardown.add(`${host} of run ${run}`, async () => { await d.proc.stop() })
      daemons.push(d)
    }
    const [a, b] = daemons as [DaemonHandle, DaemonHandle]
    const pids = { registry: registry.pid, supernode: supernode.proc.child.pid, 'daemon A': a.proc.child.pid, 'daemon B': b.proc.child.pid }
    const shoal = ['supernode', 'daemon A', 'daemon B']
    const urls = [`${registry.url}${path}`, `${a.url}${path}`, `${b.url}${path}`, `${a.url}${path}`]
    for (const [i, mode] of modes.entries()) {
      const threadsBefore = Object.fromEntries(shoal.map(p => [p, threadCpuSeconds(pids[p as keyof typeof pids])]))
      const meter = new CpuMeter(pids).start()
      const res = await fetchAndHash(urls[i]!)
      const cpu = meter.stop()
      const busiest = shoal.reduce((x, y) => (cpu[y] ?? 0) > (cpu[x] ?? 0) ? y : x)
      const threadsAfter = threadCpuSeconds(pids[busiest as keyof typeof pids])
      if (res.status !== 200 || res.bytes !== size || res.digest !== blob.digest) {
        throw new Error(`${mode}: got ${res.status} with ${res.bytes} bytes hashing to ${res.digest}, expected 200 with ${size} hashing to ${blob.digest}`)
      }
      const gib = size / GiB
      const cpuPerGiB = Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / gib]))
      samples.get(mode)!.push({
        mode,
        mbPerSecond: size / 1e6 / res.seconds,
        seconds: res.seconds,
        cpuPerGiB,
        shoalCpuPerGiB: i === 0 ? 0 : shoal.reduce((sum, p) => sum + (cpuPerGiB[p] ?? 0), 0),
        ...(i === 0
          ? {}
          : {
              busiestByThread: {
                process: busiest,
                threads: Object.fromEntries(Object.entries(threadsAfter).map(([t, v]) => [t, (v - (threadsBefore[busiest]?.[t] ?? 0)) / gib]).filter(([, v]) => (v as number) >= 0.01))
              }
            })
      })
    }
    peerBytes = await daemonBytes(b.url)
    rss['daemon A'] = Math.max(rss['daemon A'], peakRss(a.proc.child.pid))
    rss['daemon B'] = Math.max(rss['daemon B'], peakRss(b.proc.child.pid))
    rss.supernode = Math.max(rss.supernode, peakRss(supernode.proc.child.pid))
    for (const d of daemons) {
      await d.proc.stop()
    }
    await stopSupernode()
    if (!keep) {
      await rm(runDir, { recursive: true, force: true })
    }
  }
  // the run with the median Shoal CPU (throughput for direct), so each row is one real run
  const results: ModeResult[] = modes.map(mode => {
    const all = [...samples.get(mode)!].sort((x, y) => mode === modes[0] ? x.mbPerSecond - y.mbPerSecond : x.shoalCpuPerGiB - y.shoalCpuPerGiB)
    return all[Math.floor(all.length / 2)]!
  })

  const direct = results[0]!.mbPerSecond
  const rows = [['mode', 'MB/s', '× direct', 'Shoal CPU-s/GiB', 'registry', 'supernode', 'daemon A', 'daemon B']]
  for (const r of results) {
    rows.push([
      r.mode, r.mbPerSecond.toFixed(0), (r.mbPerSecond / direct).toFixed(2), r.shoalCpuPerGiB.toFixed(2),
      ...['registry', 'supernode', 'daemon A', 'daemon B'].map(p => (r.cpuPerGiB[p] ?? 0).toFixed(2))
    ])
  }
  say()
  say(`median of ${runs} run${runs > 1 ? 's' : ''} (the run with the median Shoal CPU; for direct, the median throughput)`)
  say(textTable(rows))
  say()
  for (const r of results.slice(1)) {
    if (r.busiestByThread != null) {
      say(`${r.mode}: ${r.busiestByThread.process} by thread, CPU-s/GiB: ${Object.entries(r.busiestByThread.threads).sort((x, y) => y[1] - x[1]).map(([t, v]) => `${t} ${v.toFixed(2)}`).join(', ')}`)
    }
  }
  say(`peak RSS: daemon A ${(rss['daemon A'] / 1e6).toFixed(0)} MB, daemon B ${(rss['daemon B'] / 1e6).toFixed(0)} MB, supernode ${(rss.supernode / 1e6).toFixed(0)} MB`)
  say(`daemon B's bytes by source: peer ${(peerBytes.peer / MiB).toFixed(0)} MiB, supernode ${(peerBytes.supernode / MiB).toFixed(0)} MiB, origin ${(peerBytes.origin / MiB).toFixed(0)} MiB`)

  const report = {
    benchmark: 'data-path',
    date: new Date().toISOString(),
    command: `./dev bench data-path ${process.argv.slice(2).join(' ')}`.trim(),
    machine: await machineSummary(),
    sizeBytes: size,
    runs,
    client: 'curl | openssl dgst -sha256',
    results,
    allRuns: Object.fromEntries(samples),
    peakRss: rss,
    peerBytesBySource: peerBytes
  }
  const jsonPath = values.json ?? join(REPO_ROOT, '.shoal', 'bench', 'results', `data-path-${size / MiB}MiB-${Date.now()}.json`)
  await mkdir(join(jsonPath, '..'), { recursive: true })
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`)
  say(`results: ${jsonPath}`)
} catch (err) {
  failed = true
  process.stderr.write(`data-path benchmark failed: ${(err as Error).stack ?? String(err)}\n`)
} finally {
  await teardown.run()
  if (existsSync(dir)) {
    say(`logs and data: ${dir}`)
  }
}
process.exitCode = failed ? 1 : 0
