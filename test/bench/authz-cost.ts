/**
 * What the authorization check costs on a public layer: a 1 KiB blob already on the
 * daemon's disk, fetched over loopback with a kept-alive connection, one request at a
 * time, the modes interleaved.
 *
 *   registry   client ← docker-registry GET (reference)
 *   head       client ← docker-registry HEAD (the check's own round trip)
 *   warm       client ← daemon, from disk, the answer cached (--auth-cache-ttl 60000)
 *   cold       client ← daemon, from disk, asking the registry every time (--auth-cache-ttl 0)
 *
 * cold − warm is what the check adds when its answer is not cached; warm is what every
 * request pays within the cache ttl.
 *
 *   ./dev bench authz-cost [--requests 50] [--json FILE]
 */
import { createHash } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Agent, request } from 'undici'
import { writeRandomBlob } from '../harness/image.ts'
import { REPO_ROOT } from '../harness/processes.ts'
import { pushBlob, startDockerRegistry } from '../harness/registry.ts'
import { startDaemon } from '../harness/swarm.ts'
import { machineSummary } from './lib/machine.ts'
import { percentile, textTable } from './lib/stats.ts'
import { Teardown } from './lib/teardown.ts'

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '50' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})
if (values.help) {
  process.stdout.write('usage: ./dev bench authz-cost [--requests 50] [--json FILE]\n  --requests  timed requests per mode (5..10000), after 5 untimed ones\n  --json      also write the results here\n')
  process.exit(0)
}
const requests = Number(values.requests)
if (!Number.isInteger(requests) || requests < 5 || requests > 10_000) {
  process.stderr.write('authz-cost: --requests must be a whole number from 5 to 10000\n')
  process.exit(2)
}

const say = (line = ''): void => { process.stdout.write(`${line}\n`) }
const dir = join(REPO_ROOT, '.shoal', 'bench', `authz-cost-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}`)
const teardown = new Teardown()
teardown.installExitHandlers()

const MODES = ['registry', 'head', 'warm', 'cold'] as const
type Mode = typeof MODES[number]

try {
  await mkdir(dir, { recursive: true })
  teardown.add('bench directory', async () => { await rm(dir, { recursive: true, force: true }) })
  const registry = await startDockerRegistry(join(dir, 'registry'))
  teardown.add('registry', async () => { await registry.stop() })
  const name = 'library/authz-cost'
  const blob = await writeRandomBlob(join(dir, 'blob.bin'), 1024)
  await pushBlob(registry.url, name, blob)

  const warmDaemon = await startDaemon({ dir, name: 'warm', registry: registry.url, supernode: null, extraArgs: ['--auth-cache-ttl', '60000'] })
  teardown.add('warm daemon', async () => { await warmDaemon.proc.stop() })
  const coldDaemon = await startDaemon({ dir, name: 'cold', registry: registry.url, supernode: null, extraArgs: ['--auth-cache-ttl', '0'] })
  teardown.add('cold daemon', async () => { await coldDaemon.proc.stop() })

  const agent = new Agent({ connections: 1, keepAliveTimeout: 60_000 })
  teardown.add('client', async () => { await agent.close() })
  const path = `/v2/${name}/blobs/${blob.digest}`
  const target: Record<Mode, { url: string, method: 'GET' | 'HEAD' }> = {
    registry: { url: `${registry.url}${path}`, method: 'GET' },
    head: { url: `${registry.url}${path}`, method: 'HEAD' },
    warm: { url: `${warmDaemon.url}${path}`, method: 'GET' },
    cold: { url: `${coldDaemon.url}${path}`, method: 'GET' }
  }

  const once = async (mode: Mode): Promise<number> => {
    const { url, method } = target[mode]
    const started = performance.now()
    const res = await request(url, { method, dispatcher: agent, signal: AbortSignal.any([teardown.signal, AbortSignal.timeout(10_000)]) })
    const body = Buffer.from(await res.body.arrayBuffer())
    const ms = performance.now() - started
    if (res.statusCode !== 200 || (method === 'GET' && `sha256:${createHash('sha256').update(body).digest('hex')}` !== blob.digest)) {
      throw new Error(`${mode}: ${res.statusCode}, ${body.byteLength} bytes that do not match ${blob.digest}`)
    }
    return ms
  }

  // untimed: the daemons fetch the blob onto their disks, connections open, code warms up
  for (let i = 0; i < 5; i++) {
    for (const mode of MODES) {
      await once(mode)
    }
  }
  const samples: Record<Mode, number[]> = { registry: [], head: [], warm: [], cold: [] }
  for (let i = 0; i < requests; i++) {
    for (const mode of MODES) {
      samples[mode].push(await once(mode))
    }
  }

  const median = (mode: Mode): number => percentile(samples[mode], 50)
  const results = MODES.map(mode => ({ mode, medianMs: median(mode), p90Ms: percentile(samples[mode], 90), minMs: Math.min(...samples[mode]) }))
  const added = median('cold') - median('warm')
  const machine = await machineSummary()
  say(`authz-cost: a 1 KiB public blob, on disk, over loopback, ${requests} requests per mode; ${machine.cpu}, ${machine.cores} cores, node ${machine.node}`)
  say()
  say(textTable([
    ['mode', 'median ms', 'p90 ms', 'min ms'],
    ...results.map(r => [r.mode, r.medianMs.toFixed(3), r.p90Ms.toFixed(3), r.minMs.toFixed(3)])
  ]))
  say()
  say(`the check, not cached, adds ${added.toFixed(3)} ms to the median request (cold − warm)`)
  if (values.json != null) {
    await writeFile(values.json, JSON.stringify({ date: new Date().toISOString(), command: `./dev bench authz-cost ${process.argv.slice(2).join(' ')}`.trim(), machine, requests, blobBytes: 1024, results, addedMedianMs: added }, null, 2))
  }
} finally {
  await teardown.run()
}
