/**
 * The benchmarks stay runnable: each runs end to end at a toy size (real registries,
 * network namespaces and skopeo for the fleet; every mode's bytes checked against their
 * digest in the data path), reports what the docs quote, and leaves nothing behind.
 * The real runs are on demand (docs/benchmarks.md).
 */
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeTestDir, REPO_ROOT, run } from '../harness/processes.ts'
import { requireReal } from '../harness/require-binary.ts'

const skip = requireReal({ binaries: ['docker-registry', 'skopeo', 'curl', 'openssl', 'ip', 'tc'], root: true })

async function namespaces (): Promise<string[]> {
  try {
    return (await readdir('/run/netns')).filter(ns => ns.startsWith('shoalb'))
  } catch {
    return []
  }
}

async function benchDirs (): Promise<string[]> {
  try {
    return (await readdir(join(REPO_ROOT, '.shoal', 'bench'))).filter(d => d !== 'results')
  } catch {
    return []
  }
}

describe.skipIf(skip != null)(`benchmarks at a toy size${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let dirsBefore: string[]

  beforeAll(async () => {
    dir = await makeTestDir('bench')
    dirsBefore = await benchDirs()
  })

  afterAll(async () => {
    await run('rm', ['-rf', dir])
  })

  it('fleet: three modes on namespaced hosts, Shoal fetching each blob from the origin once', async () => {
    const json = join(dir, 'fleet.json')
    const res = await run(process.execPath, [`${REPO_ROOT}test/bench/fleet.ts`, '--hosts', '2', '--layers-mib', '2,1', '--sweep', '', '--json', json, '--svg-dir', dir], { timeoutMs: 240_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    const report = JSON.parse(await readFile(json, 'utf8')) as { headline: Array<{ mode: string, seconds: Array<number | null>, failures: string[], originBlobGets: number, shoal?: { bytesBySource: { peer: number, supernode: number, origin: number } } }> }
    expect(report.headline.map(r => r.mode)).toEqual(['direct', 'cache', 'shoal'])
    for (const r of report.headline) {
      expect(r.failures).toEqual([])
      expect(r.seconds.every(s => s != null && s > 0)).toBe(true)
    }
    // two hosts straight from the origin: every blob (config and two layers) twice
    expect(report.headline[0]!.originBlobGets).toBe(6)
    const shoal = report.headline[2]!
    expect(shoal.originBlobGets).toBe(3)
    expect(shoal.shoal!.bytesBySource.origin).toBe(0)
    expect(shoal.shoal!.bytesBySource.peer).toBeGreaterThan(0)
    expect(await readFile(join(dir, 'fleet-headline.svg'), 'utf8')).toMatch(/^<svg /)
    expect(await namespaces()).toEqual([])
  })

  it('fleet with faults: one of four daemons SIGKILLed mid-pull, the three survivors still complete, verified', async () => {
    const json = join(dir, 'fleet-kill.json')
    // 6 MiB over 4 MB/s host links: about 1.6 s ideal, so the kill lands well inside the pull
    const res = await run(process.execPath, [`${REPO_ROOT}test/bench/fleet.ts`, '--hosts', '4', '--layers-mib', '4,2', '--host-link', '4', '--modes', 'shoal', '--sweep', '', '--no-warmup', '--kill-daemons', '0.25', '--json', json], { timeoutMs: 60_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    expect(res.stdout).toMatch(/faults: 4 hosts/)
    expect(res.stdout).toMatch(/killed h4 at /)
    const report = JSON.parse(await readFile(json, 'utf8')) as {
      headline: Array<{ mode: string, failures: string[] }>
      faults: Array<{ mode: string, seconds: Array<number | null>, failures: string[], fault: { kind: string, victims: string[], injected: boolean, atSeconds: number, victimPulls: Array<{ host: string }> }, summary: { killed: string[], survivors: number, survivorsFailed: number, seconds: { p99: number } | null, ratioToFaultFree: { p99: number } | null } }>
    }
    // the fault-free run of the same size first
    expect(report.headline.map(r => r.mode)).toEqual(['shoal'])
    expect(report.headline[0]!.failures).toEqual([])
    expect(report.faults).toHaveLength(1)
    const f = report.faults[0]!
    expect(f.fault.kind).toBe('kill-daemons')
    expect(f.fault.injected).toBe(true)
    expect(f.fault.atSeconds).toBeGreaterThan(0)
    expect(f.fault.victims).toEqual(['h4'])
    expect(f.fault.victimPulls.map(p => p.host)).toEqual(['h4'])
    expect(f.summary.killed).toEqual(['h4'])
    // the survivors: every pull done (skopeo verifies each blob's digest), none failed
    expect(f.failures).toEqual([])
    expect(f.summary.survivors).toBe(3)
    expect(f.summary.survivorsFailed).toBe(0)
    expect(f.seconds.slice(0, 3).every(s => s != null && s > 0)).toBe(true)
    expect(f.seconds[3]).toBeNull()
    expect(f.summary.seconds!.p99).toBeGreaterThan(0)
    expect(f.summary.ratioToFaultFree!.p99).toBeGreaterThan(0)
    expect(await namespaces()).toEqual([])
  })

  it('fleet with a supernode killed: two supernodes, the one owning the layers SIGKILLed mid-pull, every host still completes, verified', async () => {
    const json = join(dir, 'fleet-snkill.json')
    // the headline straight from the origin (quick), then Shoal with two supernodes without and with the kill
    const res = await run(process.execPath, [`${REPO_ROOT}test/bench/fleet.ts`, '--hosts', '4', '--layers-mib', '4,2', '--host-link', '4', '--modes', 'direct', '--sweep', '', '--no-warmup', '--kill-supernode', '--json', json], { timeoutMs: 60_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    expect(res.stdout).toMatch(/1 of 2 supernodes SIGKILLed: killed sn2? at /)
    const report = JSON.parse(await readFile(json, 'utf8')) as {
      faultFree: Array<{ supernodes: number, failures: string[], seconds: Array<number | null> }>
      faults: Array<{ supernodes: number, seconds: Array<number | null>, failures: string[], fault: { kind: string, victims: string[], injected: boolean, atSeconds: number, choice: string, victimPulls: unknown[] }, summary: { killed: string[], survivors: number, survivorsFailed: number, ratioToFaultFree: { p99: number } | null, faultFree: { supernodes: number } } }>
    }
    // the baseline: the same two supernodes, no kill
    expect(report.faultFree.map(r => r.supernodes)).toEqual([2])
    expect(report.faultFree[0]!.failures).toEqual([])
    expect(report.faults).toHaveLength(1)
    const f = report.faults[0]!
    expect(f.supernodes).toBe(2)
    expect(f.fault.kind).toBe('kill-supernode')
    expect(f.fault.injected).toBe(true)
    expect(f.fault.atSeconds).toBeGreaterThan(0)
    expect(f.fault.victims).toHaveLength(1)
    expect(['sn', 'sn2']).toContain(f.fault.victims[0])
    expect(f.fault.choice).toMatch(/owns [12] of 2 layers/)
    expect(f.fault.victimPulls).toEqual([])
    // every host survives: every pull done (skopeo verifies each blob's digest), none failed
    expect(f.failures).toEqual([])
    expect(f.seconds).toHaveLength(4)
    expect(f.seconds.every(s => s != null && s > 0)).toBe(true)
    expect(f.summary.survivors).toBe(4)
    expect(f.summary.survivorsFailed).toBe(0)
    expect(f.summary.faultFree.supernodes).toBe(2)
    expect(f.summary.ratioToFaultFree!.p99).toBeGreaterThan(0)
    expect(await namespaces()).toEqual([])
  })

  it('data path: direct, cold, peer to peer and warm all deliver the verified layer', async () => {
    const json = join(dir, 'data-path.json')
    const res = await run(process.execPath, [`${REPO_ROOT}test/bench/data-path.ts`, '--size-mib', '16', '--runs', '1', '--json', json], { timeoutMs: 120_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    const report = JSON.parse(await readFile(json, 'utf8')) as { results: Array<{ mode: string, mbPerSecond: number }>, peerBytesBySource: { peer: number } }
    expect(report.results.map(r => r.mode)).toEqual(['direct (docker-registry)', 'cold through Shoal', 'peer to peer', 'warm (own store)'])
    expect(report.results.every(r => r.mbPerSecond > 0)).toBe(true)
    expect(report.peerBytesBySource.peer).toBe(16 * 1024 * 1024)
  })

  it('authz cost: a public blob on disk, the check cached and not, each answer verified', async () => {
    const json = join(dir, 'authz-cost.json')
    const res = await run(process.execPath, [`${REPO_ROOT}test/bench/authz-cost.ts`, '--requests', '5', '--json', json], { timeoutMs: 120_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    const report = JSON.parse(await readFile(json, 'utf8')) as { results: Array<{ mode: string, medianMs: number }> }
    expect(report.results.map(r => r.mode)).toEqual(['registry', 'head', 'warm', 'cold'])
    expect(report.results.every(r => r.medianMs > 0)).toBe(true)
  })

  it('cipher: both ways of encrypting report a cost for every buffer size', async () => {
    const res = await run(process.execPath, [`${REPO_ROOT}test/bench/cipher.ts`, '--mib', '1'], { timeoutMs: 60_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    const rows = res.stdout.split('\n').filter(line => /^\s*\d+\s+\d/.test(line))
    expect(rows.map(r => Number(r.trim().split(/\s+/)[0]))).toEqual([1448, 4096, 16384, 65536, 262144])
  })

  it('scheduler: simulated peers all finish, every transfer settled, figures reported', async () => {
    const res = await run(process.execPath, [`${REPO_ROOT}test/bench/scheduler.ts`, '--peers', '200', '--tasks', '4', '--gib', '0.25', '--rounds', '2'], { timeoutMs: 120_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    const rounds = res.stdout.split('\n').filter(line => /^\s+\d+\s+\d+\s+\d+/.test(line))
    expect(rounds).toHaveLength(2)
    // no round left a peer unfinished, and the scheduler holds nothing afterwards
    expect(res.stdout).not.toMatch(/unfinished/)
    expect(res.stdout).toMatch(/left in the scheduler: 0 transfers in flight, \d+ queued for expiry, 0 tasks/)
    expect(res.stdout).toMatch(/piece reports per CPU-second: [1-9]\d*/)
  })

  it('leaves no run directory behind', async () => {
    expect(await benchDirs()).toEqual(dirsBefore)
  })
})
