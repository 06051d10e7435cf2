/**
 * The fleet benchmark: N test hosts, each in its own network namespace on a shaped link,
 * pull one image at once, as in a release, three ways in one run: straight from the
 * origin (Debian's docker-registry), through a Distribution pull-through cache, and
 * through Shoal. Every host runs the same client (skopeo: the manifest, then every blob,
 * verified). Then, with --kill-daemons, Shoal again with that fraction of the daemons
 * SIGKILLed mid-pull, against the fault-free Shoal run; with --kill-supernode, Shoal with
 * two supernodes, one SIGKILLed mid-pull, against a fault-free run with the same two.
 * Then a sweep over fleet sizes for Shoal and the direct pull.
 *
 *   ./dev bench fleet [--hosts 16] [--layers-mib 64,64] [--host-link 10] [--origin-link 20]
 *                     [--supernode-link 20] [--modes direct,cache,shoal] [--sweep 4,8,16,24]
 *                     [--sweep-modes shoal,direct] [--kill-daemons F] [--kill-supernode] [--json FILE]
 *                     [--svg-dir DIR] [--keep]
 *
 * Needs root, iproute2 (ip, tc), skopeo, curl and docker-registry.
 */
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { generateImage, type GeneratedImage } from '../harness/image.ts'
import { REPO_ROOT } from '../harness/processes.ts'
import { which } from '../harness/require-binary.ts'
import { faultRows, summarizeFault } from './lib/fault-report.ts'
import { faultLabel, KILL_MOMENT, supernodesFor, type FaultPlan } from './lib/faults.ts'
import { Fleet, MODE_LABELS, MODES, type Mode, type ModeRun } from './lib/fleet.ts'
import { machineSummary } from './lib/machine.ts'
import { removeStaleNetworks } from './lib/netns.ts'
import { distribution, textTable, type Distribution } from './lib/stats.ts'
import { cdfChart, lineChart } from './lib/svg.ts'
import { Teardown } from './lib/teardown.ts'

const MiB = 1024 * 1024
const MB = 1e6

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '16' },
    'layers-mib': { type: 'string', default: '64,64' },
    'host-link': { type: 'string', default: '10' },
    'origin-link': { type: 'string', default: '20' },
    'supernode-link': { type: 'string', default: '20' },
    modes: { type: 'string', default: 'direct,cache,shoal' },
    sweep: { type: 'string', default: '4,8,16,24' },
    'sweep-modes': { type: 'string', default: 'shoal,direct' },
    'kill-daemons': { type: 'string' },
    'kill-supernode': { type: 'boolean', default: false },
    'daemon-args': { type: 'string', default: '' },
    'supernode-args': { type: 'string', default: '' },
    'node-args': { type: 'string', default: '' },
    json: { type: 'string' },
    'svg-dir': { type: 'string' },
    keep: { type: 'boolean', default: false },
    idcs: { type: 'string', default: '1' },
    'inter-idc-fraction': { type: 'string', default: '0.25' },
    'no-idc-labels': { type: 'boolean', default: false },
    'no-warmup': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false }
  }
})

const USAGE = `usage: ./dev bench fleet [options]
  --hosts N             hosts in the headline run (1..64, default 16)
  --layers-mib A,B      the image's layer sizes in MiB (default 64,64)
  --host-link R         each host's link, MB/s (10^6 bytes/s) each way (default 10)
  --origin-link R       the origin registry's link, MB/s (default 20)
  --supernode-link R    the supernode's link, and the pull-through cache's, MB/s (default 20)
  --modes LIST          headline modes: direct, cache, shoal (default all three)
  --sweep LIST          fleet sizes for the sweep; '' for none (default 4,8,16,24)
  --sweep-modes LIST    modes in the sweep (default shoal,direct)
  --kill-daemons F      also run Shoal with the fraction F (0 < F < 1) of the hosts' daemons
                        SIGKILLed once ${KILL_MOMENT}
                        (round(F × hosts), at least one and never all, every k-th host from
                        the last); reported for the survivors against the fault-free Shoal
                        run of the same size, which runs first
  --kill-supernode      also run Shoal with two supernodes (each on its own link like the
                        first, every daemon given both) and SIGKILL one of them at the same
                        moment: the one owning most of the image's layers by the daemons'
                        rendezvous ranking (then most blob bytes, then the first); reported
                        for all hosts against a fault-free run with the same two supernodes
                        (run first; the one-supernode run is shown too when there is one)
  --idcs N              split the hosts into N IDCs (1..4, default 1): host i in IDC i mod N,
                        each daemon given --idc; the origin, supernode and cache sit in IDC 0,
                        and each other IDC is joined to it by one shaped link. Reports the
                        bytes crossing those links ÷ (image × IDCs)
  --inter-idc-fraction F  each inter-IDC link's rate as a fraction of an IDC's host links
                        summed (hosts ÷ IDCs × --host-link; default 0.25)
  --no-idc-labels       with --idcs, give the daemons no --idc (the same network, a scheduler
                        that does not know it): the baseline for the IDC rules
  --daemon-args ARGS    extra flags for every dfget daemon (space-separated)
  --supernode-args ARGS extra flags for the supernode(s)
  --node-args ARGS      flags for node in the Shoal processes (space-separated)
  --json FILE           write the results here (default .shoal/bench/results/fleet-<time>.json)
  --svg-dir DIR         write fleet-headline.svg and fleet-sweep.svg here
  --keep                keep logs and data in .shoal/bench/<run>/
  --no-warmup           measure Shoal's daemons straight after start-up (by default every
                        host first pulls a small, different image through its daemon, as
                        a running fleet's daemons have long since done)
  --profile             V8 CPU profiles of the Shoal processes into the run directory (implies --keep)
`
if (values.help) {
  process.stdout.write(USAGE)
  process.exit(0)
}

function fail (message: string): never {
  process.stderr.write(`fleet: ${message}\n${USAGE}`)
  process.exit(2)
}
const list = (s: string): string[] => s.split(',').map(x => x.trim()).filter(x => x !== '')
const positive = (name: string, s: string, max: number): number => {
  const n = Number(s)
  if (!(n > 0 && n <= max)) {
    fail(`--${name} must be a number above 0 and at most ${max}`)
  }
  return n
}
const modesOf = (name: string, s: string): Mode[] => {
  const modes = list(s)
  const bad = modes.filter(m => !(MODES as readonly string[]).includes(m))
  if (bad.length > 0) {
    fail(`--${name}: unknown mode(s) ${bad.join(', ')}; expected ${MODES.join(', ')}`)
  }
  return modes as Mode[]
}

const hosts = positive('hosts', values.hosts, 64)
const layerSizes = list(values['layers-mib']).map(s => positive('layers-mib', s, 2048) * MiB)
const hostRate = positive('host-link', values['host-link'], 10_000) * MB
const originRate = positive('origin-link', values['origin-link'], 10_000) * MB
const supernodeRate = positive('supernode-link', values['supernode-link'], 10_000) * MB
const modes = modesOf('modes', values.modes)
const idcs = positive('idcs', values.idcs, 4)
const interIdcFraction = positive('inter-idc-fraction', values['inter-idc-fraction'], 1)
if (!Number.isInteger(idcs) || idcs > hosts) {
  fail('--idcs takes a whole number, at most --hosts')
}
const sweep = list(values.sweep).map(s => positive('sweep', s, 64))
const sweepModes = modesOf('sweep-modes', values['sweep-modes'])
// the faults to inject, each in its own Shoal run
const faults: FaultPlan[] = []
if (values['kill-daemons'] != null) {
  const fraction = Number(values['kill-daemons'])
  if (!(fraction > 0 && fraction < 1)) {
    fail('--kill-daemons takes a fraction above 0 and below 1')
  }
  faults.push({ kind: 'kill-daemons', fraction })
}
if (values['kill-supernode']) {
  faults.push({ kind: 'kill-supernode' })
}
if (faults.length > 0 && hosts < 2) {
  fail('a fault run needs at least 2 hosts: one killed, one surviving')
}
if (!Number.isInteger(hosts) || sweep.some(n => !Number.isInteger(n)) || layerSizes.length === 0) {
  fail('--hosts and --sweep take whole numbers, --layers-mib at least one size')
}
const missing = ['ip', 'tc', 'skopeo', 'curl', 'docker-registry'].filter(b => which(b) == null)
if (missing.length > 0 || process.getuid?.() !== 0) {
  process.stderr.write(`fleet: needs root and ${['ip', 'tc', 'skopeo', 'curl', 'docker-registry'].join(', ')}; ${missing.length > 0 ? `missing: ${missing.join(', ')} (apt-get install iproute2 skopeo curl docker-registry)` : 'not running as root'}\n`)
  process.exit(2)
}

const say = (line = ''): void => { process.stdout.write(`${line}\n`) }
const runId = `fleet-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`
const dir = join(REPO_ROOT, '.shoal', 'bench', runId)
const keep = values.keep || values.profile
const teardown = new Teardown()
teardown.installExitHandlers()

interface Summary {
  mode: Mode
  hosts: number
  failed: number
  seconds: Distribution | null
  ratio: Distribution | null
  originEgressBytes: number
  originEgressRatio: number
  originBlobGets: number
}

function summarize (run: ModeRun, ideal: number, imageBytes: number): Summary {
  const done = run.seconds.filter((s): s is number => s != null)
  const seconds = done.length > 0 ? distribution(done) : null
  const ratio = seconds == null ? null : { p50: seconds.p50 / ideal, p95: seconds.p95 / ideal, p99: seconds.p99 / ideal, max: seconds.max / ideal }
  return { mode: run.mode, hosts: run.hosts, failed: run.failures.length, seconds, ratio, originEgressBytes: run.originEgressBytes, originEgressRatio: run.originEgressBytes / imageBytes, originBlobGets: run.originBlobGets }
}

function doneDistribution (run: ModeRun | undefined): Distribution | null {
  const done = run?.seconds.filter((s): s is number => s != null) ?? []
  return done.length > 0 ? distribution(done) : null
}

function modeRows (summaries: Summary[], ideal: number): string[][] {
  const rows = [['mode', 'hosts', 'p50 s', 'p95 s', 'p99 s', 'max s', 'p99 ÷ ideal', 'origin egress ÷ image', 'origin blob GETs', 'failed']]
  for (const s of summaries) {
    rows.push([
      MODE_LABELS[s.mode], String(s.hosts),
      ...(s.seconds == null ? ['-', '-', '-', '-', '-'] : [s.seconds.p50, s.seconds.p95, s.seconds.p99, s.seconds.max].map(v => v.toFixed(1)).concat((s.seconds.p99 / ideal).toFixed(2))),
      s.originEgressRatio.toFixed(2), String(s.originBlobGets), String(s.failed)
    ])
  }
  return rows
}

let failed = false
try {
  const stale = await removeStaleNetworks()
  if (stale.length > 0) {
    say(`removed ${stale.length} namespaces an earlier, killed benchmark left behind`)
  }
  await mkdir(dir, { recursive: true })
  // an interrupted run has nothing worth keeping; a failed one keeps its logs
  teardown.add('run directory', async () => { if (!keep && (!failed || teardown.signal.aborted)) { await rm(dir, { recursive: true, force: true }) } })

  const fleet = new Fleet({
    dir,
    hosts: Math.max(hosts, ...sweep),
    hostRate,
    originRate,
    supernodeRate,
    supernodes: Math.max(1, ...faults.map(supernodesFor)),
    daemonArgs: list(values['daemon-args'].replaceAll(' ', ',')),
    supernodeArgs: list(values['supernode-args'].replaceAll(' ', ',')),
    idcs,
    idcLabels: !values['no-idc-labels'],
    interIdcRate: interIdcFraction * Math.ceil(hosts / idcs) * hostRate,
    nodeArgs: [...values.profile ? ['--cpu-prof', `--cpu-prof-dir=${join(dir, 'profiles')}`] : [], ...list(values['node-args'].replaceAll(' ', ','))],
    keep
  }, teardown)
  await fleet.setup()
  await mkdir(join(dir, 'image'), { recursive: true })
  const image: GeneratedImage = await generateImage(join(dir, 'image'), 'bench/app', 'latest', layerSizes)
  await fleet.push(image)
  // what the daemons pulled before the release: another, small image (not measured)
  await mkdir(join(dir, 'warmup'), { recursive: true })
  const warmup: GeneratedImage = await generateImage(join(dir, 'warmup'), 'bench/warmup', 'latest', [8 * MiB, 8 * MiB])
  await fleet.push(warmup)
  const imageBytes = image.layerBytes + image.config.size
  const ideal = imageBytes / hostRate
  say(`image: ${image.layers.length} layers, ${(imageBytes / MiB).toFixed(1)} MiB; links: hosts ${hostRate / MB} MB/s, origin ${originRate / MB} MB/s, supernode and cache ${supernodeRate / MB} MB/s`)
  say(`ideal per host (image ÷ host link): ${ideal.toFixed(1)} s`)
  if (idcs > 1) {
    say(`${idcs} IDCs; each joined to IDC 0 by a ${(interIdcFraction * Math.ceil(hosts / idcs) * hostRate / MB).toFixed(1)} MB/s link (${interIdcFraction} × its hosts' links)`)
  }

  const runs = new Map<string, ModeRun>()
  const runOnce = async (mode: Mode, n: number, supernodes = 1): Promise<ModeRun> => {
    const key = `${mode}/${n}${supernodes > 1 ? `/${supernodes}sn` : ''}`
    const done = runs.get(key)
    if (done != null) {
      return done
    }
    teardown.signal.throwIfAborted()
    say(`running ${MODE_LABELS[mode]} with ${n} hosts${supernodes > 1 ? ` and ${supernodes} supernodes` : ''}...`)
    const result = await fleet.runMode(mode, n, image, values['no-warmup'] ? undefined : warmup, undefined, supernodes)
    for (const f of result.failures) {
      say(`  ${f}`)
    }
    if (result.interIdcBytes != null) {
      say(`  inter-IDC bytes: ${(result.interIdcBytes / MiB).toFixed(1)} MiB = ${(result.interIdcBytes / (imageBytes * idcs)).toFixed(2)} × (image × ${idcs} IDCs)`)
    }
    runs.set(key, result)
    return result
  }

  const headline: ModeRun[] = []
  for (const mode of modes) {
    headline.push(await runOnce(mode, hosts))
  }
  const headlineSummaries = headline.map(r => summarize(r, ideal, imageBytes))
  say()
  say(`headline: ${hosts} hosts`)
  say(textTable(modeRows(headlineSummaries, ideal)))
  const shoal = headline.find(r => r.mode === 'shoal')?.shoal
  if (shoal != null) {
    const into = shoal.bytesBySource.origin + shoal.bytesBySource.supernode + shoal.bytesBySource.peer
    const delivered = hosts * imageBytes / 2 ** 30
    say()
    say(`Shoal: supernode uploaded ${(shoal.supernodeUploadBytes / imageBytes).toFixed(2)}× the image; host bytes from peers ${(100 * shoal.bytesBySource.peer / Math.max(1, into)).toFixed(1)}%, supernode ${(100 * shoal.bytesBySource.supernode / Math.max(1, into)).toFixed(1)}%, origin ${(100 * shoal.bytesBySource.origin / Math.max(1, into)).toFixed(1)}%`)
    say(`Shoal: daemons served their clients ${(shoal.servedBytes / (hosts * imageBytes)).toFixed(2)}× the image per host`)
    say(`Shoal: back to source ${JSON.stringify(shoal.backToSource)}; failed pieces ${JSON.stringify(shoal.pieceErrors)}`)
    say(`Shoal: ${shoal.cpuSeconds.toFixed(1)} CPU-s over supernode and daemons (supernode ${shoal.supernodeCpuSeconds.toFixed(1)}), ${(shoal.cpuSeconds / delivered).toFixed(2)} CPU-s per GiB delivered`)
    say(`Shoal: the daemons' CPU by thread: ${Object.entries(shoal.daemonCpuByThread).filter(([, v]) => v >= 0.05).sort((x, y) => y[1] - x[1]).map(([t, v]) => `${t} ${v.toFixed(1)} s`).join(', ')}`)
    say(`Shoal: peak RSS ${(shoal.daemonPeakRss / 1e6).toFixed(0)} MB for the largest daemon, ${(shoal.supernodePeakRss / 1e6).toFixed(0)} MB for the supernode`)
  }

  // faults: each against the fault-free Shoal run of the same size and the same number of
  // supernodes, run first (the headline's, when it has one): a kill-supernode run has
  // two, and a baseline with one would mix the kill's cost with the second supernode's gain
  const faultRuns: ModeRun[] = []
  const faultFree: ModeRun[] = []
  for (const fault of faults) {
    const base = await runOnce('shoal', hosts, supernodesFor(fault))
    if (!faultFree.includes(base)) {
      faultFree.push(base)
    }
  }
  const oneSupernode = runs.get(`shoal/${hosts}`)
  if (oneSupernode != null && faults.length > 0 && !faultFree.includes(oneSupernode)) {
    faultFree.unshift(oneSupernode)
  }
  for (const fault of faults) {
    teardown.signal.throwIfAborted()
    say(`running ${MODE_LABELS.shoal} with ${hosts} hosts, ${faultLabel(fault)}...`)
    const result = await fleet.runMode('shoal', hosts, image, values['no-warmup'] ? undefined : warmup, fault)
    for (const f of result.failures) {
      say(`  survivor failed: ${f}`)
    }
    faultRuns.push(result)
  }
  const faultSummaries = faultRuns.map((r, i) => summarizeFault(r, runs.get(`shoal/${hosts}${supernodesFor(faults[i]) > 1 ? `/${supernodesFor(faults[i])}sn` : ''}`)!, ideal, imageBytes))
  if (faultRuns.length > 0) {
    say()
    say(`faults: ${hosts} hosts; the fault runs' figures are the survivors' (killed hosts' pulls fail, as expected, and are not counted; a killed supernode leaves every host a survivor)`)
    say(textTable(faultRows(faultSummaries, faultFree, ideal, imageBytes)))
    for (const s of faultSummaries) {
      if (!s.injected) {
        say(`${s.label}: NOT injected: the pulls ended before ${KILL_MOMENT}`)
        continue
      }
      say(`${s.label}: killed ${s.killed.join(', ')} at ${s.atSeconds!.toFixed(1)} s, once ${KILL_MOMENT}; survivors' back to source ${JSON.stringify(s.backToSource)}`)
      if (s.choice != null) {
        say(`${s.label}: the victim: ${s.choice}`)
      }
      const one = doneDistribution(oneSupernode)
      if (s.plan.kind === 'kill-supernode' && one != null && s.seconds != null) {
        say(`${s.label}: against the one-supernode fault-free run: p50 ${(s.seconds.p50 / one.p50).toFixed(2)}×, p99 ${(s.seconds.p99 / one.p99).toFixed(2)}×`)
      }
    }
  }

  const sweepRuns: ModeRun[] = []
  for (const n of sweep) {
    for (const mode of sweepModes) {
      sweepRuns.push(await runOnce(mode, n))
    }
  }
  const sweepSummaries = sweepRuns.map(r => summarize(r, ideal, imageBytes))
  if (sweepRuns.length > 0) {
    say()
    say('sweep')
    say(textTable(modeRows(sweepSummaries, ideal)))
  }

  const report = {
    benchmark: 'fleet',
    date: new Date().toISOString(),
    command: `./dev bench fleet ${process.argv.slice(2).join(' ')}`.trim(),
    machine: await machineSummary(),
    config: { hosts, layerSizes, hostRate, originRate, supernodeRate, modes, sweep, sweepModes, faults, killMoment: KILL_MOMENT, warmup: !values['no-warmup'], daemonArgs: values['daemon-args'], supernodeArgs: values['supernode-args'], nodeArgs: values['node-args'] },
    imageBytes,
    idealSeconds: ideal,
    headline: headline.map((r, i) => ({ ...r, summary: headlineSummaries[i] })),
    faultFree: faultFree.map(r => ({ ...r, summary: summarize(r, ideal, imageBytes) })),
    faults: faultRuns.map((r, i) => ({ ...r, summary: faultSummaries[i] })),
    sweep: sweepRuns.map((r, i) => ({ ...r, summary: sweepSummaries[i] }))
  }
  const jsonPath = values.json ?? join(REPO_ROOT, '.shoal', 'bench', 'results', `${runId}.json`)
  await mkdir(join(jsonPath, '..'), { recursive: true })
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`)
  say()
  say(`results: ${jsonPath}`)

  if (values['svg-dir'] != null) {
    const colors: Record<Mode, string> = { direct: '#d62728', cache: '#ff7f0e', shoal: '#1f77b4' }
    await mkdir(values['svg-dir'], { recursive: true })
    await writeFile(join(values['svg-dir'], 'fleet-headline.svg'), cdfChart(
      `${hosts} hosts pull a ${(imageBytes / MiB).toFixed(0)} MiB image at once (${hostRate / MB} MB/s host links)`,
      'seconds since all hosts started',
      headline.map(r => ({ label: MODE_LABELS[r.mode], color: colors[r.mode], values: r.seconds.filter((s): s is number => s != null) })),
      [{ x: ideal, label: 'ideal' }, { x: 1.5 * ideal, label: '1.5× ideal' }]
    ))
    if (sweepRuns.length > 0) {
      await writeFile(join(values['svg-dir'], 'fleet-sweep.svg'), lineChart(
        'p99 completion ÷ ideal, by fleet size',
        'hosts', 'p99 ÷ ideal', sweep,
        sweepModes.map(mode => ({ label: MODE_LABELS[mode], color: colors[mode], values: sweep.map(n => summarize(runs.get(`${mode}/${n}`)!, ideal, imageBytes).ratio?.p99 ?? 0) })),
        [{ x: 1.5, label: '1.5× target' }]
      ))
    }
    say(`charts: ${values['svg-dir']}`)
  }
} catch (err) {
  failed = true
  process.stderr.write(`fleet benchmark failed: ${(err as Error).stack ?? String(err)}\nlogs: ${dir}\n`)
} finally {
  await teardown.run()
  if (existsSync(dir)) {
    say(`logs and data: ${dir}`)
  }
}
process.exitCode = failed ? 1 : 0
