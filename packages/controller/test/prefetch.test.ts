/**
 * `dfctl prefetch`, the built CLI, against in-test servers that speak shared contract 4
 * (the daemon's prefetch API and the supernode's preheat API).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { selectHosts, type PrefetchHost } from '../src/index.ts'
import { BINARIES, run } from '../../../test/harness/processes.ts'
import { requireReal, which } from '../../../test/harness/require-binary.ts'
import { startContract4Server, type Contract4Server, type JobBehaviour, type RecordedRequest } from './fixtures/contract4-server.ts'

const MiB = 1024 * 1024

describe('dfctl prefetch', () => {
  let dir: string
  let tokenFile: string
  const servers: Contract4Server[] = []
  let log: RecordedRequest[] = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-prefetch-'))
    tokenFile = join(dir, 'preheat.token')
    await writeFile(tokenFile, 's3cret-token\n', { mode: 0o600 })
  })

  afterEach(async () => {
    await Promise.all(servers.splice(0).map(async s => { await s.stop() }))
    log = []
  })

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const daemon = async (name: string, behaviour: JobBehaviour): Promise<Contract4Server> => {
    const s = await startContract4Server({ name, kind: 'daemon', behaviour, log })
    servers.push(s)
    return s
  }
  const supernode = async (behaviour: JobBehaviour): Promise<Contract4Server> => {
    const s = await startContract4Server({ name: 'sn', kind: 'supernode', behaviour, token: 's3cret-token', log })
    servers.push(s)
    return s
  }
  const dfctl = async (...args: string[]): Promise<{ stdout: string, stderr: string, code: number }> =>
    await run(process.execPath, [BINARIES.dfctl, 'prefetch', '--poll-interval', '20ms', ...args], { timeoutMs: 30_000 })
  const flag = (s: Contract4Server): string[] => ['--daemon', `${s.name}=${s.url}`]

  it('preheats on the supernode first, then prefetches on every host, one line per state change and a final table', async () => {
    const sn = await supernode({ kind: 'ok', totalBytes: 3 * MiB, steps: 2, bySource: { origin: 1 } })
    const a = await daemon('host-a', { kind: 'ok', totalBytes: 3 * MiB, steps: 3, bySource: { peer: 2, supernode: 1 } })
    const b = await daemon('host-b', { kind: 'ok', totalBytes: 3 * MiB, steps: 3, bySource: { supernode: 1 } })

    const { stdout, stderr, code } = await dfctl('registry.example/app:1.2', '--supernode-api', sn.url, '--token-file', tokenFile, '--platform', 'linux/arm64', ...flag(a), ...flag(b))

    expect({ code, stderr }).toMatchObject({ code: 0 })
    const lines = stderr.trim().split('\n')
    expect(lines).toEqual(expect.arrayContaining([
      `preheat ${sn.url} running`,
      'host-a running',
      'host-b running',
      expect.stringMatching(/^host-a succeeded 3\.0 MiB in [\d.]+m?s \(peer 2\.0 MiB, supernode 1\.0 MiB, origin 0 B, local 0 B\)$/),
      expect.stringMatching(/^host-b succeeded 3\.0 MiB in [\d.]+m?s \(peer 0 B, supernode 3\.0 MiB, origin 0 B, local 0 B\)$/)
    ]))
    // one line per state change: running and succeeded for each of the three
    expect(lines).toHaveLength(6)

    const table = stdout.trim().split('\n')
    expect(table[0]).toMatch(/^HOST +STATE +BYTES +TIME +PEER +SUPERNODE +ORIGIN +LOCAL +ERROR$/)
    expect(table).toEqual(expect.arrayContaining([
      expect.stringMatching(/^host-a +succeeded +3\.0 MiB +\S+ +2\.0 MiB +1\.0 MiB +0 B +0 B$/),
      expect.stringMatching(/^host-b +succeeded +3\.0 MiB +\S+ +0 B +3\.0 MiB +0 B +0 B$/)
    ]))

    // the preheat ended before any daemon was asked, with the token; the body is contract 4's
    const preheatEnd = Math.max(...log.filter(r => r.server === 'sn').map(r => r.at))
    const firstDaemon = Math.min(...log.filter(r => r.server !== 'sn').map(r => r.at))
    expect(preheatEnd).toBeLessThan(firstDaemon)
    expect(log.filter(r => r.server === 'sn').every(r => r.authorization === 'Bearer s3cret-token')).toBe(true)
    expect(log.find(r => r.server === 'host-a' && r.method === 'POST')?.body).toEqual({ image: 'registry.example/app:1.2', platforms: ['linux/arm64'] })
  })

  it('--json prints the result with bytes by source per host', async () => {
    const a = await daemon('host-a', { kind: 'ok', totalBytes: 2 * MiB, steps: 2, bySource: { peer: 1, local: 1 } })
    const { stdout, code } = await dfctl('alpine', 'busybox:1.36', '--json', '--progress', 'none', ...flag(a))
    expect(code).toBe(0)
    const result = JSON.parse(stdout) as { ok: boolean, images: string[], preheat: unknown[], hosts: Array<Record<string, unknown>> }
    expect(result).toMatchObject({
      ok: true,
      images: ['alpine', 'busybox:1.36'],
      preheat: [],
      hosts: [{
        name: 'host-a', url: a.url, state: 'succeeded', totalBytes: 4 * MiB, completedBytes: 4 * MiB,
        bytesBySource: { peer: 2 * MiB, local: 2 * MiB, supernode: 0, origin: 0 },
        jobs: [{ image: 'alpine', state: 'succeeded' }, { image: 'busybox:1.36', state: 'succeeded' }]
      }]
    })
    expect(result.hosts[0]?.durationMs).toBeGreaterThan(0)
  })

  it('exits 1 naming the host that failed and why; the others still finish', async () => {
    const a = await daemon('host-a', { kind: 'ok', totalBytes: MiB, steps: 2 })
    const b = await daemon('host-b', { kind: 'fail', error: 'manifest unknown: registry.example/app:9.9' })
    const { stdout, stderr, code } = await dfctl('registry.example/app:9.9', ...flag(a), ...flag(b))
    expect(code).toBe(1)
    expect(stderr).toContain('dfctl prefetch: host-b failed: registry.example/app:9.9: manifest unknown: registry.example/app:9.9\n')
    expect(stderr).not.toMatch(/host-a failed/)
    expect(stdout).toMatch(/^host-a +succeeded/m)
    expect(stdout).toMatch(/^host-b +failed .*manifest unknown/m)
  })

  it('rides out a status request or two failing, not more', async () => {
    const a = await daemon('host-a', { kind: 'ok', totalBytes: MiB, steps: 1, failPolls: 2 })
    const b = await daemon('host-b', { kind: 'ok', totalBytes: MiB, steps: 1, failPolls: 3 })
    const { stderr, code } = await dfctl('alpine', ...flag(a), ...flag(b))
    expect(code).toBe(1)
    expect(stderr).toMatch(/^host-a succeeded/m)
    expect(stderr).toMatch(new RegExp(`^dfctl prefetch: host-b failed: alpine: GET ${b.url}/api/v1/prefetch/job-1 answered 503: UNAVAILABLE restarting$`, 'm'))
  })

  it('gives up at --timeout: exits 1 naming the hosts still running', async () => {
    const a = await daemon('host-a', { kind: 'ok', totalBytes: MiB, steps: 1 })
    const b = await daemon('host-b', { kind: 'hang' })
    const started = performance.now()
    const { stdout, stderr, code } = await dfctl('alpine', '--timeout', '1500ms', '--json', ...flag(a), ...flag(b))
    expect(performance.now() - started).toBeLessThan(10_000)
    expect(code).toBe(1)
    expect(stderr).toContain('dfctl prefetch: host-b failed: alpine: timed out after 1.5s\n')
    const result = JSON.parse(stdout) as { ok: boolean, hosts: Array<{ name: string, state: string }> }
    expect(result.ok).toBe(false)
    expect(result.hosts.map(h => [h.name, h.state])).toEqual([['host-a', 'succeeded'], ['host-b', 'failed']])
  })

  it('reports a preheat the supernode refused (wrong token) and still prefetches the hosts', async () => {
    const sn = await supernode({ kind: 'ok', totalBytes: MiB, steps: 1 })
    const a = await daemon('host-a', { kind: 'ok', totalBytes: MiB, steps: 1 })
    const wrong = join(dir, 'wrong.token')
    await writeFile(wrong, 'not-the-token')
    const { stderr, code } = await dfctl('alpine', '--supernode-api', sn.url, '--token-file', wrong, ...flag(a))
    expect(code).toBe(1)
    expect(stderr).toMatch(new RegExp(`dfctl prefetch: preheat on ${sn.url} failed: alpine: POST ${sn.url}/api/v1/preheat answered 401: UNAUTHORIZED a valid preheat token is required`))
    expect(stderr).toMatch(/^host-a succeeded/m)
  })

  it('asks at most --concurrency hosts at once', async () => {
    const hosts = await Promise.all(['h1', 'h2', 'h3'].map(async name => await daemon(name, { kind: 'ok', totalBytes: MiB, steps: 3 })))
    const { code } = await dfctl('alpine', '--concurrency', '1', '--progress', 'none', ...hosts.flatMap(flag))
    expect(code).toBe(0)
    const spans = hosts.map(h => {
      const at = log.filter(r => r.server === h.name).map(r => r.at)
      return [Math.min(...at), Math.max(...at)] as const
    }).sort((x, y) => x[0] - y[0])
    for (let i = 1; i < spans.length; i++) {
      expect(spans[i]![0]).toBeGreaterThan(spans[i - 1]![1])
    }
  })

  it('--progress bars draws a bar per host with bytes and rate', async () => {
    const a = await daemon('host-a', { kind: 'ok', totalBytes: 5 * MiB, steps: 3, bySource: { peer: 1 } })
    const { stderr, code } = await dfctl('alpine', '--progress', 'bars', ...flag(a))
    expect(code).toBe(0)
    expect(stderr).toMatch(/host-a succeeded \[[█░]+\] 100% 5\.0 MiB \/ 5\.0 MiB [\d.]+ (KiB|MiB|GiB)\/s/)
  })

  // util-linux's script(1) gives the CLI a real pseudo-terminal
  const noTerminal = requireReal({ binaries: ['script'] })
  it.skipIf(noTerminal != null)(`on a terminal, draws the bars by itself (no --progress)${noTerminal != null ? ` (skipped: ${noTerminal})` : ''}`, async () => {
    const a = await daemon('host-a', { kind: 'ok', totalBytes: 5 * MiB, steps: 3 })
    const command = [process.execPath, BINARIES.dfctl, 'prefetch', 'alpine', '--poll-interval', '20ms', '--daemon', `host-a=${a.url}`].map(s => `'${s}'`).join(' ')
    const { stdout, code } = await run(which('script') ?? 'script', ['-qefc', command, '/dev/null'], { timeoutMs: 30_000 })
    expect(code).toBe(0)
    expect(stdout).toContain('\u001b[')
    expect(stdout).toMatch(/host-a succeeded \[[█░]+\] 100% 5\.0 MiB \/ 5\.0 MiB [\d.]+ (KiB|MiB|GiB)\/s/)
    // not the line-per-state-change output
    expect(stdout).not.toMatch(/host-a running\r?\n/)
  })

  /** An inventory whose hosts' daemonApi are the given servers (and whose supernode's api, when given, is `sn`). */
  const inventory = async (hosts: Array<{ server: Contract4Server, idc: string, location: string, labels?: Record<string, string> }>, sn?: Contract4Server, extra = ''): Promise<string> => {
    const file = join(dir, `fleet-${Math.random().toString(36).slice(2)}.yaml`)
    await writeFile(file, [
      'clusterKeyFile: cluster.key',
      ...(sn != null ? ['supernodes:', `  - { address: /ip4/127.0.0.1/tcp/8003, api: ${sn.url} }`, `preheatTokenFile: ${tokenFile}`] : ['supernodes: [/ip4/127.0.0.1/tcp/8003]']),
      'groups:',
      `  web: [${hosts.map(h => h.server.name).join(', ')}]`,
      'hosts:',
      ...hosts.flatMap(h => [
        `  - name: ${h.server.name}`,
        '    address: 127.0.0.1',
        '    executor: local',
        `    idc: ${h.idc}`,
        `    location: ${h.location}`,
        `    labels: ${JSON.stringify(h.labels ?? {})}`,
        `    daemonApi: ${h.server.url}`
      ]),
      extra
    ].join('\n'))
    return file
  }

  it('--inventory: preheats on the inventory\'s supernodes with its token file, then prefetches on the hosts --group/--selector pick, --count spread across idcs', async () => {
    const sn = await supernode({ kind: 'ok', totalBytes: MiB, steps: 1 })
    const a1 = await daemon('a1', { kind: 'ok', totalBytes: MiB, steps: 1 })
    const a2 = await daemon('a2', { kind: 'ok', totalBytes: MiB, steps: 1 })
    const b1 = await daemon('b1', { kind: 'ok', totalBytes: MiB, steps: 1 })
    const c1 = await daemon('c1', { kind: 'ok', totalBytes: MiB, steps: 1 })
    const file = await inventory([
      { server: a1, idc: 'fra', location: 'eu|fra|r1', labels: { tier: 'web' } },
      { server: a2, idc: 'fra', location: 'eu|fra|r2', labels: { tier: 'web' } },
      { server: b1, idc: 'ams', location: 'eu|ams|r1', labels: { tier: 'web' } },
      { server: c1, idc: 'ams', location: 'eu|ams|r2', labels: { tier: 'db' } }
    ], sn)
    // the selector drops c1; --count 2 then takes one host per idc
    const { stdout, code, stderr } = await dfctl('--inventory', file, '--group', 'web', '--selector', 'tier=web', '--count', '2', '--json', '--progress', 'none', 'app:1')
    expect(code, stderr).toBe(0)
    const result = JSON.parse(stdout) as { preheat: Array<{ name: string, state: string }>, hosts: Array<{ name: string, url: string, state: string }> }
    expect(result.preheat).toMatchObject([{ name: sn.url, state: 'succeeded' }])
    expect(result.hosts.map(h => [h.name, h.url, h.state])).toEqual([['b1', b1.url, 'succeeded'], ['a1', a1.url, 'succeeded']])
    expect(log.filter(r => r.server === 'sn').every(r => r.authorization === 'Bearer s3cret-token')).toBe(true)
    expect(log.filter(r => r.server === 'sn' && r.method === 'POST')).toHaveLength(1)
    expect(log.filter(r => r.server === 'a2' || r.server === 'c1')).toEqual([])

    // --hosts as dfctl rollout takes it; an inventory without supernode APIs preheats nothing
    const plain = await inventory([{ server: a2, idc: 'fra', location: 'eu|fra|r2' }, { server: c1, idc: 'ams', location: 'eu|ams|r2' }])
    const only = await dfctl('app:1', '-i', plain, '--hosts', 'c1', '--json', '--progress', 'none')
    expect(only.code, only.stderr).toBe(0)
    expect((JSON.parse(only.stdout) as { preheat: unknown[], hosts: Array<{ name: string }> })).toMatchObject({ preheat: [], hosts: [{ name: 'c1' }] })
  })

  it('--inventory: an inventory with --daemon, --supernode-api or --token-file is a usage error; so is an unknown host or a supernode api without its token file', async () => {
    const a = await daemon('a1', { kind: 'ok', totalBytes: MiB, steps: 1 })
    const file = await inventory([{ server: a, idc: 'fra', location: 'eu|fra|r1' }])
    const noToken = await inventory([{ server: a, idc: 'fra', location: 'eu|fra|r1' }], a)
    await writeFile(noToken, (await readFile(noToken, 'utf8')).replace(/^preheatTokenFile: .*\n/m, ''))
    for (const [args, message] of [
      [['--daemon', `x=${a.url}`], '--daemon cannot be given with --inventory'],
      [['--supernode-api', a.url, '--token-file', tokenFile], '--supernode-api and --token-file cannot be given with --inventory'],
      [['--hosts', 'nope'], '--hosts: no host named nope in the inventory'],
      [['--group', 'db'], '--group: no group named db in the inventory']
    ] as Array<[string[], string]>) {
      const { stderr, code } = await dfctl('app:1', '-i', file, ...args)
      expect({ args, code }).toEqual({ args, code: 2 })
      expect(stderr).toContain(message)
    }
    const missing = await dfctl('app:1', '-i', noToken)
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(new RegExp(`${noToken.replace(/[.]/g, '\\.')}:3:\\d+: supernodes\\[0\\]\\.api: preheat needs preheatTokenFile`))
    expect(log).toEqual([])
  })

  it('names bad flags and exits 2 without asking anyone', { timeout: 90_000 }, async () => {
    for (const [args, message] of [
      [['alpine'], 'no hosts: give --inventory, or at least one --daemon'],
      [['alpine', '--group', 'web', '--daemon', 'a=http://127.0.0.1:1'], '--hosts, --group and --selector select hosts of an inventory: give --inventory too'],
      [['alpine', '--daemon', 'web-1'], '--daemon must be name=http://host:port, not "web-1"'],
      [['alpine', '--daemon', 'a=http://127.0.0.1:1', '--daemon', 'a=http://127.0.0.1:2'], 'names must be unique: a given twice'],
      [['alpine', '--daemon', 'a=http://127.0.0.1:1', '--timeout', 'soon'], '--timeout must be a duration such as 90s, 10m or 1h, not "soon"'],
      [['alpine', '--daemon', 'a=http://127.0.0.1:1', '--percent', '0'], '--percent must be a number above 0 and at most 100, not "0"'],
      [['alpine', '--daemon', 'a=http://127.0.0.1:1', '--percent', 'half'], '--percent must be a number above 0 and at most 100, not "half"'],
      [['alpine', '--daemon', 'a=http://127.0.0.1:1', '--count', '0'], '--count must be a whole number of at least 1, not "0"'],
      [['alpine', '--daemon', 'a=http://127.0.0.1:1', '--supernode-api', 'http://127.0.0.1:3'], '--supernode-api and --token-file go together'],
      [['alpine', '--daemon', 'a=http://127.0.0.1:1', '--supernode-api', 'http://127.0.0.1:3', '--token-file', join(dir, 'missing')], `cannot read --token-file ${join(dir, 'missing')}`]
    ] as Array<[string[], string]>) {
      const { stderr, code } = await dfctl(...args)
      expect({ args, code }).toEqual({ args, code: 2 })
      expect(stderr).toContain(message)
    }
  })
})

describe('selectHosts', () => {
  const host = (name: string, idc: string, location: string): PrefetchHost => ({ name, url: `http://${name}:65001`, idc, location })
  const fleet = [
    host('a1', 'eu', 'eu|fra|rack1'), host('a2', 'eu', 'eu|fra|rack1'), host('a3', 'eu', 'eu|fra|rack2'),
    host('b1', 'us', 'us|iad|rack1'), host('b2', 'us', 'us|iad|rack1'), host('b3', 'us', 'us|iad|rack2')
  ]

  it('spreads --count across idcs first, then racks', () => {
    expect(selectHosts(fleet, { count: 2 }).map(h => h.name)).toEqual(['a1', 'b1'])
    expect(selectHosts(fleet, { count: 4 }).map(h => h.name)).toEqual(['a1', 'b1', 'a3', 'b3'])
  })

  it('--percent rounds up, and no share means every host', () => {
    expect(selectHosts(fleet, { percent: 50 }).map(h => h.name)).toEqual(['a1', 'b1', 'a3'])
    expect(selectHosts(fleet, { percent: 1 })).toHaveLength(1)
    expect(selectHosts(fleet)).toHaveLength(6)
  })

  it('hosts without a location are taken by name', () => {
    expect(selectHosts([{ name: 'z', url: 'http://z' }, { name: 'y', url: 'http://y' }], { count: 1 }).map(h => h.name)).toEqual(['y'])
  })
})
