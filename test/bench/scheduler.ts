/**
 * The scheduler alone, in one process, no network: 10,000 simulated peers pull 100
 * tasks of 1 GiB (100 peers per task, in 4 IDCs). Each step one peer reports the pieces
 * it was given (ok, with a piece time; a few slow parents, a rare bad piece) and asks
 * for 4 more. Measures piece reports handled per CPU-second, the latency of one
 * scheduling decision (p50, p99), and RSS after each round; every round starts 100 new
 * tasks and lets the old ones go, so RSS across rounds shows whether memory stays flat.
 * It runs with the supernode's V8 flags (`packages/core/src/runtime/node-flags.ts`).
 *
 *   ./dev bench scheduler [--peers 10000] [--tasks 100] [--gib 1] [--rounds 3] [--idcs 4]
 */
// first: the V8 flags the supernode runs with (re-executes this process with them), so
// RSS and pauses are the supernode's
import '../../packages/core/dist/runtime/apply-node-flags.js'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from '../harness/processes.ts'
import type * as SupernodeModule from '../../packages/supernode/src/index.ts'
import type { PieceAssignment, PieceResult } from '../../packages/core/src/index.ts'

const { values } = parseArgs({
  options: {
    peers: { type: 'string', default: '10000' },
    tasks: { type: 'string', default: '100' },
    gib: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    idcs: { type: 'string', default: '4' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})
if (values.help) {
  process.stdout.write('usage: ./dev bench scheduler [--peers 10000] [--tasks 100] [--gib 1] [--rounds 3] [--idcs 4]\n')
  process.exit(0)
}
const PEERS = Number(values.peers)
const TASKS = Number(values.tasks)
const BYTES = Number(values.gib) * 2 ** 30
const ROUNDS = Number(values.rounds)
const IDCS = Number(values.idcs)
for (const [name, v, max] of [['peers', PEERS, 100_000], ['tasks', TASKS, 10_000], ['rounds', ROUNDS, 100], ['idcs', IDCS, 64]] as const) {
  if (!Number.isInteger(v) || v < 1 || v > max) {
    process.stderr.write(`scheduler: --${name} must be 1..${max}\n`)
    process.exit(2)
  }
}
if (!(BYTES > 0 && BYTES <= 64 * 2 ** 30) || PEERS < TASKS) {
  process.stderr.write('scheduler: --gib must be in (0, 64], and --peers at least --tasks\n')
  process.exit(2)
}

const sn = await import(`${REPO_ROOT}packages/supernode/dist/index.js`) as typeof SupernodeModule
const core = await import(`${REPO_ROOT}packages/core/dist/index.js`) as { pieceSizeFor: (n: number) => number, pieceCount: (n: number, s: number) => number }

const SELF = { peerId: 'SuperNode', addrs: ['/ip4/10.0.0.1/tcp/8003/p2p/SuperNode'] }
const peers = new sn.PeerRegistry()
const ids: string[] = []
for (let i = 0; i < PEERS; i++) {
  const id = `peer${i}`
  ids.push(id)
  const idc = `idc-${i % IDCS}`
  peers.upsert({ peerId: id, addrs: [`/ip4/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/tcp/65002/p2p/${id}`], hostname: id, idc, location: `eu|${idc}|rack${i % 40}` })
}
/** One peer in 20 serves ten times slower: the scheduler should rank it down. */
const slow = (id: string): boolean => Number(id.slice(4)) % 20 === 7
const scheduler = new sn.Scheduler({ peers, self: () => SELF })
let decisionSamples = new Float64Array(1 << 20)
let decisions = 0
const service = new sn.ScheduleService({
  peers,
  scheduler,
  selfId: () => SELF.peerId,
  onDecision: (seconds) => {
    if (decisions === decisionSamples.length) {
      const bigger = new Float64Array(decisionSamples.length * 2)
      bigger.set(decisionSamples)
      decisionSamples = bigger
    }
    decisionSamples[decisions++] = seconds
  }
})

const pieceSize = core.pieceSizeFor(BYTES)
const pieceCount = core.pieceCount(BYTES, pieceSize)
const digest = `sha256:${'0'.repeat(64)}`

function makeTask (round: number, t: number): SupernodeModule.Task {
  const task = new sn.Task({ id: `${round.toString(16).padStart(8, '0')}${t.toString(16).padStart(56, '0')}`, url: `http://origin/v2/app/blobs/${t}` })
  service.attach(task)
  task.start(BYTES, pieceSize)
  for (let num = 0; num < pieceCount; num++) {
    task.addPiece({ num, offset: num * pieceSize, length: Math.min(pieceSize, BYTES - num * pieceSize), digest })
  }
  task.succeed(BYTES)
  return task
}

setFlagsFromString('--expose-gc')
/** A full collection, so the heap figure is what is live */
const fullGc = runInNewContext('gc') as () => void

const percentile = (sorted: Float64Array, p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0
const mib = (n: number): string => (n / 2 ** 20).toFixed(0)

process.stdout.write(`${PEERS} peers, ${TASKS} tasks of ${values.gib} GiB (${pieceCount} pieces of ${mib(pieceSize)} MiB), ${IDCS} IDCs, ${ROUNDS} rounds\n`)
fullGc()
const startRss = process.memoryUsage().rss
process.stdout.write(`RSS with the peers registered, before any task: ${mib(startRss)} MiB\n`)
process.stdout.write('round  steps      reports  report CPU-s  reports/CPU-s  decisions  p50 ms  p99 ms  max ms  RSS MiB  heap MiB  peak heap MiB\n')
/** Heap in use after each pass over the peers: garbage included, the peak of what V8 held */
const roundHeap: number[] = []
let totalReports = 0
let totalReportCpu = 0
let worstP99 = 0
let peakRss = 0
for (let round = 0; round < ROUNDS; round++) {
  const tasks = Array.from({ length: TASKS }, (_, t) => makeTask(round, t))
  const running = new Map<string, PieceAssignment[]>()
  const done = new Set<string>()
  decisions = 0
  let reports = 0
  let reportCpu = 0
  let steps = 0
  // bounded: every peer needs pieceCount pieces, 4 at most per step; 50 passes over all peers
  for (let pass = 0; pass < 50 * Math.ceil(pieceCount / 4) && done.size < PEERS; pass++) {
    for (let i = 0; i < PEERS; i++) {
      const id = ids[i]!
      if (done.has(id)) {
        continue
      }
      const task = tasks[i % TASKS]!
      const given = running.get(id) ?? []
      const results: PieceResult[] = given.map(a => {
        const source = a.sources[0]!.peerId
        // one bad piece in a thousand, from peers only
        const bad = source !== SELF.peerId && Math.random() < 0.001
        return bad
          ? { num: a.num, ok: false, source, code: 'ERR_PIECE_DIGEST_MISMATCH' }
          : { num: a.num, ok: true, source, bytes: a.length, ms: (slow(source) ? 1000 : 100) * (0.8 + Math.random() * 0.4) }
      })
      const before = process.cpuUsage()
      service.report(task, id, results)
      const used = process.cpuUsage(before)
      reportCpu += (used.user + used.system) / 1e6
      reports += results.length
      steps++
      if (sn.nothingLeft(task, id, new Set())) {
        done.add(id)
        running.delete(id)
        continue
      }
      running.set(id, service.decide(task, id, new Set(), 4))
    }
    roundHeap.push(process.memoryUsage().heapUsed)
  }
  const sorted = decisionSamples.slice(0, decisions).sort()
  const p50 = percentile(sorted, 0.5) * 1000
  const p99 = percentile(sorted, 0.99) * 1000
  const max = (sorted[sorted.length - 1] ?? 0) * 1000
  // the round's tasks go, as the supernode's sweep lets finished tasks' holder maps go
  for (const task of tasks) {
    task.clearHolders()
  }
  tasks.length = 0
  running.clear()
  fullGc()
  const peakHeap = Math.max(...roundHeap)
  roundHeap.length = 0
  const { rss, heapUsed } = process.memoryUsage()
  peakRss = Math.max(peakRss, rss)
  worstP99 = Math.max(worstP99, p99)
  totalReports += reports
  totalReportCpu += reportCpu
  process.stdout.write(`${String(round).padStart(5)}  ${String(steps).padStart(8)}  ${String(reports).padStart(9)}  ${reportCpu.toFixed(2).padStart(12)}  ${Math.round(reports / reportCpu).toString().padStart(13)}  ${String(decisions).padStart(9)}  ${p50.toFixed(3).padStart(6)}  ${p99.toFixed(3).padStart(6)}  ${max.toFixed(1).padStart(6)}  ${mib(rss).padStart(7)}  ${mib(heapUsed).padStart(8)}  ${mib(peakHeap).padStart(13)}${done.size < PEERS ? `  (${PEERS - done.size} peers unfinished)` : ''}\n`)
}
const rate = totalReports / totalReportCpu
process.stdout.write(`\npiece reports per CPU-second: ${Math.round(rate)} (target >= 20000) ${rate >= 20_000 ? 'ok' : 'MISSED'}\n`)
process.stdout.write(`worst round's decision p99: ${worstP99.toFixed(3)} ms (target <= 2) ${worstP99 <= 2 ? 'ok' : 'MISSED'}\n`)
process.stdout.write(`peak RSS after a round: ${mib(peakRss)} MiB (target <= 300) ${peakRss <= 300 * 2 ** 20 ? 'ok' : 'MISSED'}\n`)
process.stdout.write(`left in the scheduler: ${scheduler.pending} transfers in flight, ${scheduler.queued} queued for expiry, ${scheduler.tasksInFlight} tasks\n`)
