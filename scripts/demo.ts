/**
 * The main job: a local demo swarm. One supernode and three daemons on loopback pull a
 * generated multi-layer image from a real upstream registry (Debian's docker-registry
 * when installed, otherwise the read-only origin Shoal ships for the demo), all hosts
 * at once, as in a release roll-out. Prints, per host, the time taken and the bytes by
 * source, and how often the registry was asked for each blob.
 *
 *   node scripts/demo.ts [--hosts 3] [--layers-mib 24,12,6] [--origin auto|docker-registry|builtin] [--keep]
 */
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { startCountingProxy } from '../test/harness/counting-proxy.ts'
import { generateImage } from '../test/harness/image.ts'
import { daemonBytes, type BytesBySource } from '../test/harness/metrics.ts'
import { REPO_ROOT } from '../test/harness/processes.ts'
import { pullImage } from '../test/harness/pull-image.ts'
import { startDemoOrigin, startDockerRegistry, type Registry } from '../test/harness/registry.ts'
import { which } from '../test/harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../test/harness/swarm.ts'

const MiB = 1024 * 1024

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '3' },
    'layers-mib': { type: 'string', default: '24,12,6' },
    origin: { type: 'string', default: 'auto' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false }
  }
})
if (values.help) {
  process.stdout.write([
    'usage: node scripts/demo.ts [--hosts 3] [--layers-mib 24,12,6] [--origin auto|docker-registry|builtin] [--keep]',
    '  --hosts       daemons in the swarm (1..16)',
    '  --layers-mib  the generated image\'s layer sizes',
    "  --origin      upstream registry: Debian's docker-registry, the demo's built-in origin, or auto (the first if installed)",
    '  --keep        leave logs and data in .shoal/demo/<run>/ (kept anyway when the demo fails)',
    ''
  ].join('\n'))
  process.exit(0)
}
const hosts = Number(values.hosts)
const layerSizes = values['layers-mib'].split(',').map(s => Number(s) * MiB)
if (!Number.isInteger(hosts) || hosts < 1 || hosts > 16 || layerSizes.some(n => !(n > 0) || n > 1024 * MiB) || !['auto', 'docker-registry', 'builtin'].includes(values.origin)) {
  process.stderr.write('demo: --hosts must be 1..16, --layers-mib a comma-separated list of sizes up to 1024, --origin auto, docker-registry or builtin\n')
  process.exit(2)
}
const useDockerRegistry = values.origin === 'docker-registry' || (values.origin === 'auto' && which('docker-registry') != null)

const say = (line = ''): void => { process.stdout.write(`${line}\n`) }
const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`
// one directory per run, so two demos (or a demo and the tests) never share one
const dir = join(REPO_ROOT, '.shoal', 'demo', `${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`)
await mkdir(dir, { recursive: true })

let registry: Registry | undefined
let supernode: SupernodeHandle | undefined
const daemons: DaemonHandle[] = []
let stopProxy: (() => Promise<void>) | undefined
let failed = false

try {
  registry = useDockerRegistry ? await startDockerRegistry(join(dir, 'registry')) : await startDemoOrigin()
  const proxy = await startCountingProxy(registry.url)
  stopProxy = proxy.stop
  say(`upstream registry: ${registry.kind === 'docker-registry' ? "Debian's docker-registry" : "the demo's built-in origin"} at ${registry.url}`)

  await mkdir(join(dir, 'image'))
  const image = await generateImage(join(dir, 'image'), 'library/shoal-demo', 'latest', layerSizes)
  await registry.push(image)
  say(`image: library/shoal-demo:latest, ${image.layers.length} layers, ${mib(image.layerBytes)}`)

  supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [proxy.url] })
  for (let i = 0; i < hosts; i++) {
    daemons.push(await startDaemon({ dir, name: `host-${i + 1}`, registry: proxy.url, supernode: supernode.url }))
  }
  say(`swarm: 1 supernode, ${hosts} daemons on loopback; every host pulls at once`)
  say()

  const started = performance.now()
  const pulls = await Promise.all(daemons.map(async d => pullImage(d.url, image.name, image.tag)))
  const wall = performance.now() - started

  const rows: Array<[string, string, string, string, string]> = [['host', 'time', 'origin', 'supernode', 'peers']]
  const totals: BytesBySource = { origin: 0, supernode: 0, peer: 0 }
  for (const [i, d] of daemons.entries()) {
    const b = await daemonBytes(d.url)
    totals.origin += b.origin
    totals.supernode += b.supernode
    totals.peer += b.peer
    rows.push([d.name, `${(pulls[i]!.ms / 1000).toFixed(2)} s`, mib(b.origin), mib(b.supernode), mib(b.peer)])
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map(r => r[c]!.length)))
  for (const row of rows) {
    say(row.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('   '))
  }
  say()
  const blobGets = [image.config, ...image.layers].map(b => ({ digest: b.digest, gets: proxy.blobGets.get(b.digest) ?? 0 }))
  say(`all ${hosts} hosts done in ${(wall / 1000).toFixed(2)} s; bytes by source, all hosts: origin ${mib(totals.origin)}, supernode ${mib(totals.supernode)}, peers ${mib(totals.peer)}`)
  const repeated = blobGets.filter(b => b.gets !== 1)
  say(`registry blob GETs: ${blobGets.reduce((n, b) => n + b.gets, 0)} for ${blobGets.length} blobs (${hosts} hosts); ${repeated.length === 0
    ? 'the registry served each blob once'
    : `not once each: ${repeated.map(b => `${b.digest.slice(7, 19)} ${b.gets}×`).join(', ')}`}`)
} catch (err) {
  failed = true
  process.stderr.write(`demo failed: ${(err as Error).message}\nlogs: ${dir}\n`)
} finally {
  await Promise.allSettled(daemons.map(async d => { await d.proc.stop() }))
  await supernode?.proc.stop()
  await stopProxy?.()
  await registry?.stop()
  if (!values.keep && !failed) {
    await rm(dir, { recursive: true, force: true })
  } else {
    say(`logs and data: ${dir}`)
  }
}
process.exitCode = failed ? 1 : 0
