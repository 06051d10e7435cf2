/**
 * dfctl against real hosts: each host is a real sshd on a loopback port with a root
 * prefix of its own (nothing touches the real /etc), reached with the system OpenSSH
 * client; the rollout installs a real bundle (dfctl bundle) and starts real daemons,
 * gated by a real pull from Debian's docker-registry through the mirror; a real
 * supernode (preheating for `dfctl prefetch --inventory`); a real dockerd whose pull
 * after the prefetch takes nothing from the network; containerd's own `config dump`
 * for doctor.
 */
import { readdir, readFile, stat, writeFile, mkdir, copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { writeClusterKeyFile } from '../../packages/core/src/p2p/cluster-key.ts'
import { startDockerd, type Dockerd } from '../harness/dockerd.ts'
import { generateImage, type GeneratedImage } from '../harness/image.ts'
import { daemonBytes, sample, scrape } from '../harness/metrics.ts'
import { BINARIES, makeTestDir, removeTestDir, run } from '../harness/processes.ts'
import { freePort, startDockerRegistry, type Registry } from '../harness/registry.ts'
import { requireReal } from '../harness/require-binary.ts'
import { sshKeygen, startSshd, type SshHost } from '../harness/sshd.ts'
import { startTokenServer, type TokenServer } from '../harness/token-server.ts'
import { startSupernode, type SupernodeHandle } from '../harness/swarm.ts'

const skip = requireReal({ binaries: ['sshd', 'ssh', 'ssh-keygen', 'docker-registry', 'dockerd', 'containerd', 'curl'], root: true })

const KiB = 1024

interface TestHost { name: string, sshd: SshHost, root: string, listen: string }

/** Every regular file under `dir`: path → content and mode (what a rollback must restore exactly). */
async function snapshot (dir: string, skipDirs: string[] = []): Promise<Map<string, { content: string, mode: number, mtimeMs: number }>> {
  const out = new Map<string, { content: string, mode: number, mtimeMs: number }>()
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name)
      if (skipDirs.some(s => p.startsWith(s))) {
        continue
      }
      if (e.isDirectory()) {
        await walk(p)
      } else if (e.isFile()) {
        const s = await stat(p)
        out.set(p.slice(dir.length), { content: (await readFile(p)).toString('base64'), mode: s.mode & 0o7777, mtimeMs: s.mtimeMs })
      }
    }
  }
  await walk(dir)
  return out
}

/** JSON is YAML: the inventory as the operator would write it, one key per line. */
const stringify = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`

const withoutTimes = (m: Map<string, { content: string, mode: number }>): Array<[string, string, number]> => [...m].map(([p, v]) => [p, v.content, v.mode])

async function healthy (listen: string): Promise<boolean> {
  try {
    const res = await request(`http://${listen}/healthz`, { signal: AbortSignal.timeout(2_000) })
    await res.body.dump()
    return res.statusCode === 200
  } catch {
    return false
  }
}

describe.skipIf(skip != null)(`dfctl rollout, prefetch, status and doctor over real sshd hosts${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let registry: Registry
  /** a registry that asks for a token even for public images, as Docker Hub does */
  let hub: Registry
  let tokens: TokenServer
  let supernode: SupernodeHandle
  let snP2p: string
  const hosts: TestHost[] = []
  let bundle: string
  let inventoryFile: string
  let clientKey: string
  let knownHosts: string
  let clusterKey: string
  /** host a's real dockerd, its daemon.json, pid file and socket under a's root */
  let dockerd: Dockerd
  /** the application image of "Prefetch, then pull" (a Docker Hub-style name, so dockerd's mirror applies) */
  let release: GeneratedImage
  let preheatToken: string

  function inventory (overrides: { clusterKeyFile?: string, a?: Record<string, unknown>, logLevel?: string, gateImage?: string } = {}): Record<string, unknown> {
    return {
      clusterKeyFile: overrides.clusterKeyFile ?? clusterKey,
      supernodes: [{ address: snP2p, api: supernode.url }],
      preheatTokenFile: preheatToken,
      bundle,
      daemon: { registry: registry.url, p2pListen: ['/ip4/127.0.0.1/tcp/0'], logLevel: overrides.logLevel ?? 'info' },
      gate: { image: overrides.gateImage ?? 'shoal/gate:1', timeout: 60_000 },
      groups: { all: ['a', 'b'] },
      hosts: hosts.map(h => ({
        name: h.name,
        address: '127.0.0.1',
        ssh: { user: 'root', port: h.sshd.port, key: clientKey, knownHostsFile: knownHosts },
        labels: { rack: h.name === 'a' ? 'r1' : 'r2' },
        runtimes: h.name === 'a' ? ['dockerd'] : ['containerd'],
        root: h.root,
        daemon: { listen: h.listen, ...(h.name === 'a' ? overrides.a ?? {} : {}) }
      }))
    }
  }

  async function dfctl (args: string[], timeoutMs = 240_000): Promise<{ stdout: string, stderr: string, code: number }> {
    return run(process.execPath, [BINARIES.dfctl, ...args], { timeoutMs })
  }

  beforeAll(async () => {
    dir = await makeTestDir('rollout')
    // the bundle the rollout installs: the real thing, node runtime included
    const built = await dfctl(['bundle', '-o', join(dir, 'shoal-0.1.0-linux-x64.tar.gz')], 300_000)
    expect(built.code, built.stderr).toBe(0)
    bundle = join(dir, 'shoal-0.1.0-linux-x64.tar.gz')
    registry = await startDockerRegistry(join(dir, 'registry'))
    await mkdir(join(dir, 'image'))
    const image = await generateImage(join(dir, 'image'), 'shoal/gate', '1', [64 * KiB, 32 * KiB])
    await registry.push(image)
    await mkdir(join(dir, 'hub'))
    tokens = await startTokenServer(join(dir, 'hub'), { users: {}, anonymous: ['shoal/public'] })
    const t = tokens
    hub = await startDockerRegistry(join(dir, 'hub'), {
      token: { realm: t.realm, service: t.service, issuer: t.issuer, rootCertBundle: t.certFile },
      pushAuthorization: (name) => `Bearer ${t.mint('pusher', [{ type: 'repository', name, actions: ['pull', 'push'] }])}`
    })
    await mkdir(join(dir, 'image-public'))
    await hub.push(await generateImage(join(dir, 'image-public'), 'shoal/public', '1', [16 * KiB]))
    await mkdir(join(dir, 'image-release'))
    release = await generateImage(join(dir, 'image-release'), 'library/shoal-release', '1', [192 * KiB, 48 * KiB])
    await registry.push(release)
    clusterKey = join(dir, 'cluster.key')
    await writeClusterKeyFile(clusterKey)
    preheatToken = join(dir, 'preheat.token')
    await writeFile(preheatToken, 'preheat-s3cret-token-0123456789\n', { mode: 0o600 })
    snP2p = `/ip4/127.0.0.1/tcp/${await freePort()}`
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [registry.url, hub.url], clusterKey, p2pListen: snP2p, extraArgs: ['--preheat-token-file', preheatToken] })
    clientKey = await sshKeygen(join(dir, 'id_ed25519'))
    knownHosts = join(dir, 'known_hosts')
    let known = ''
    for (const name of ['a', 'b']) {
      const sshd = await startSshd(dir, name, `${clientKey}.pub`)
      known += sshd.knownHosts
      const root = join(dir, `host-${name}`)
      hosts.push({ name, sshd, root, listen: `127.0.0.1:${await freePort()}` })
    }
    await writeFile(knownHosts, known)
    // what the hosts had before Shoal: a daemon.json with keys of its own (mode 0640), a containerd config without config_path
    const [a, b] = hosts as [TestHost, TestHost]
    await mkdir(join(a.root, 'etc/docker'), { recursive: true })
    await writeFile(join(a.root, 'etc/docker/daemon.json'), JSON.stringify({ 'log-driver': 'json-file', debug: true, 'registry-mirrors': ['https://mirror.example.com'] }, null, 2), { mode: 0o640 })
    await mkdir(join(a.root, 'var/run'), { recursive: true })
    dockerd = await startDockerd(join(dir, 'dockerd-a'), null, { configFile: join(a.root, 'etc/docker/daemon.json'), pidFile: join(a.root, 'var/run/docker.pid'), socket: join(a.root, 'var/run/docker.sock') })
    await mkdir(join(b.root, 'etc/containerd'), { recursive: true })
    await writeFile(join(b.root, 'etc/containerd/config.toml'), 'version = 2\n')
    inventoryFile = join(dir, 'inventory.yaml')
    await writeFile(inventoryFile, stringify(inventory()))
  })

  afterAll(async () => {
    // the supervised daemons the rollout started: stop them through their supervisor, then make sure by pid
    for (const h of hosts) {
      const supervise = join(h.root, 'opt/shoal/bin/shoal-supervise')
      const pidFile = join(h.root, 'run/shoal/dfget.pid')
      // the supervisor stops its daemon; then its whole process group, by the pid it wrote, in case it hung
      await run('sh', ['-c', `pid=$(cat ${pidFile} 2>/dev/null); [ -x ${supervise} ] && ${supervise} stop ${pidFile} /dev/null; [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null; true`], { timeoutMs: 30_000 }).catch(() => {})
      await h.sshd.stop().catch(() => {})
    }
    await dockerd?.stop()
    await supernode?.proc.stop()
    await registry?.stop()
    await hub?.stop()
    await tokens?.stop()
    await removeTestDir(dir)
  })

  it('--dry-run prints each host\'s plan with diffs and touches nothing', async () => {
    const before = await Promise.all(hosts.map(async h => snapshot(h.root)))
    const res = await dfctl(['rollout', '-i', inventoryFile, '--dry-run'])
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toMatch(/a: plan/)
    expect(res.stdout).toContain(`+    "http://${hosts[0]!.listen}",`)
    expect(res.stdout).toMatch(/the cluster key is written \(content not shown\)/)
    expect(res.stdout).not.toContain((await readFile(clusterKey, 'utf8')).split('\n')[2])
    expect(res.stdout).toMatch(/dry run: 2 host\(s\) would change/)
    const after = await Promise.all(hosts.map(async h => snapshot(h.root)))
    expect(after.map(m => [...m])).toEqual(before.map(m => [...m]))
  })

  it('rolls out to two hosts from scratch: daemons running and gated by a pull, runtimes pointed at the mirror', async () => {
    const res = await dfctl(['rollout', '-i', inventoryFile, '--batch', '2'])
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0)
    expect(res.stdout).toMatch(/a: changed: .*gate: healthy, pulled shoal\/gate:1 through the mirror \(3 blobs/)
    expect(res.stdout).toMatch(/b: changed: .*gate: healthy, pulled shoal\/gate:1/)
    const [a, b] = hosts as [TestHost, TestHost]
    for (const h of hosts) {
      expect(await healthy(h.listen), h.name).toBe(true)
      expect((await stat(join(h.root, 'etc/shoal/cluster.key'))).mode & 0o777).toBe(0o600)
      const config = await readFile(join(h.root, 'etc/shoal/dfget.yaml'), 'utf8')
      expect(config).toContain(`listen: ${h.listen}`)
      expect(config).toContain(`hostname: ${h.name}`)
    }
    // daemon.json: every key it had, the mirror first, its mode kept
    const daemonJson = JSON.parse(await readFile(join(a.root, 'etc/docker/daemon.json'), 'utf8')) as Record<string, unknown>
    expect(daemonJson).toEqual({ 'log-driver': 'json-file', debug: true, 'registry-mirrors': [`http://${a.listen}`, 'https://mirror.example.com'] })
    expect((await stat(join(a.root, 'etc/docker/daemon.json'))).mode & 0o777).toBe(0o640)
    // and the running dockerd took it (SIGHUP), as docker info reports it
    expect(res.stdout).toMatch(/a: changed: .*reloaded dockerd/)
    expect(await dockerd.mirrors()).toContain(`http://${a.listen}/`)
    const hostsToml = await readFile(join(b.root, `etc/containerd/certs.d/${new URL(registry.url).host}/hosts.toml`), 'utf8')
    expect(hostsToml).toContain(`server = "${registry.url}"`)
    expect(hostsToml).toContain(`[host."http://${b.listen}"]`)
    // the status the operator sees
    const status = await dfctl(['status', '-i', inventoryFile, '--json'])
    expect(status.code, status.stderr).toBe(0)
    const list = JSON.parse(status.stdout) as Array<{ host: string, version: string, healthy: boolean, mirror: Record<string, boolean>, bytesBySource: Record<string, number>, cacheBytes: number }>
    expect(list.map(s => [s.host, s.version, s.healthy, s.mirror])).toEqual([['a', '0.1.0', true, { dockerd: true }], ['b', '0.1.0', true, { containerd: true }]])
    for (const s of list) {
      // the gate's pull: 96 KiB of layers plus the config, from somewhere
      expect(Object.values(s.bytesBySource).reduce((x, y) => x + y, 0)).toBeGreaterThanOrEqual(96 * KiB)
      expect(s.cacheBytes).toBeGreaterThanOrEqual(96 * KiB)
    }
  })

  it('a second run with nothing changed changes nothing and says so', async () => {
    const before = await Promise.all(hosts.map(async h => snapshot(h.root)))
    const pids = await Promise.all(hosts.map(async h => readFile(join(h.root, 'run/shoal/dfget.pid'), 'utf8')))
    const res = await dfctl(['rollout', '-i', inventoryFile])
    expect(res.code, res.stderr).toBe(0)
    expect(res.stdout).toMatch(/a: unchanged/)
    expect(res.stdout).toMatch(/b: unchanged/)
    expect(res.stdout).toMatch(/2 host\(s\) up to date: nothing changed/)
    const after = await Promise.all(hosts.map(async h => snapshot(h.root, [join(h.root, 'var/lib/shoal/dfget'), join(h.root, 'var/log')])))
    // not one file rewritten: same content, mode and modification time (the daemon's own data and log aside)
    for (const [i, m] of after.entries()) {
      for (const [path, v] of m) {
        expect(before[i]!.get(path), path).toEqual(v)
      }
    }
    expect(await Promise.all(hosts.map(async h => readFile(join(h.root, 'run/shoal/dfget.pid'), 'utf8')))).toEqual(pids)
  })

  it('Prefetch, then pull: dfctl prefetch --inventory fills both hosts; a real dockerd pull on a then takes every layer from a\'s store', async () => {
    const [a] = hosts as [TestHost]
    const ref = `${new URL(registry.url).host}/library/shoal-release:1`
    const res = await dfctl(['prefetch', ref, '-i', inventoryFile, '--group', 'all', '--json', '--progress', 'none', '--poll-interval', '200ms', '--timeout', '2m'], 150_000)
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0)
    const result = JSON.parse(res.stdout) as { preheat: Array<{ name: string, state: string }>, hosts: Array<{ name: string, url: string, state: string, completedBytes: number }> }
    // the inventory's supernode preheated with the inventory's token, then each host's daemonApi prefetched
    expect(result.preheat.map(p => [p.name, p.state])).toEqual([[supernode.url, 'succeeded']])
    expect(result.hosts.map(h => [h.name, h.url, h.state]).sort()).toEqual(hosts.map(h => [h.name, `http://${h.listen}`, 'succeeded']))
    const total = [release.config, ...release.layers].reduce((n, b) => n + b.size, 0) + release.manifest.byteLength
    for (const h of result.hosts) {
      expect(h.completedBytes, h.name).toBe(total)
    }

    const mirror = `http://${a.listen}`
    const before = await daemonBytes(mirror)
    const hitsBefore = sample(await scrape(`${mirror}/metrics`), 'shoal_dfget_cache_hits_total')
    await dockerd.pull('shoal-release:1')
    expect(await dockerd.imageId('shoal-release:1')).toBe(release.imageId)
    const after = await daemonBytes(mirror)
    // the pull went through a's mirror (cache hits), and not one byte came from the origin, a peer or the supernode
    expect(sample(await scrape(`${mirror}/metrics`), 'shoal_dfget_cache_hits_total') - hitsBefore).toBeGreaterThanOrEqual(release.layers.length)
    expect(after.origin - before.origin).toBe(0)
    expect(after.peer - before.peer).toBe(0)
    expect(after.supernode - before.supernode).toBe(0)
  })

  it('a host whose new config fails its gate is rolled back exactly, and the rollout stops', async () => {
    const [a, b] = hosts as [TestHost, TestHost]
    const managed = (h: TestHost): Promise<Map<string, { content: string, mode: number, mtimeMs: number }>> => snapshot(h.root, [join(h.root, 'var/lib/shoal/dfget'), join(h.root, 'var/log'), join(h.root, 'var/lib/shoal/backups'), join(h.root, 'run')])
    const beforeA = await managed(a)
    const beforeB = await managed(b)
    const releasesBefore = await readdir(join(a.root, 'opt/shoal/releases'))
    // a: an upstream nothing listens on (the daemon starts, the gate's pull fails); b would change too (log level)
    const bad = join(dir, 'inventory-bad.yaml')
    await writeFile(bad, stringify(inventory({ a: { registry: `http://127.0.0.1:${await freePort()}` }, logLevel: 'warn' })))
    const res = await dfctl(['rollout', '-i', bad, '--batch', '1', '--max-failures', '0'])
    expect(res.code).toBe(1)
    expect(res.stdout).toMatch(/a: FAILED: pulling shoal\/gate:1 through the mirror failed|a: FAILED: fetching .* through the mirror failed/)
    expect(res.stdout).toMatch(/rolled back to what it had/)
    expect(res.stdout).toMatch(/stopping: 1 host\(s\) failed, more than --max-failures 0/)
    expect(res.stdout).toMatch(/1 failed, 1 skipped/)
    // exactly what it had: every managed file's content and mode
    expect(withoutTimes(await managed(a))).toEqual(withoutTimes(beforeA))
    expect(await readdir(join(a.root, 'opt/shoal/releases'))).toEqual(releasesBefore)
    // b was never touched
    expect([...await managed(b)]).toEqual([...beforeB])
    // and a's old daemon runs again, with its old config
    expect(await healthy(a.listen)).toBe(true)
    const backups = await readdir(join(a.root, 'var/lib/shoal/backups'))
    expect(backups.length).toBeGreaterThanOrEqual(1)
  })

  it('doctor names a runtime that is not configured (containerd without config_path), then passes once it is', async () => {
    const [, b] = hosts as [TestHost, TestHost]
    const res = await dfctl(['doctor', '-i', inventoryFile, '--host', 'b'])
    expect(res.code).toBe(1)
    expect(res.stdout).toMatch(/FAIL containerd: containerd is not using the mirror: its CRI registry config_path is ""/)
    expect(res.stdout).toContain(`fix: set config_path = "${join(b.root, 'etc/containerd/certs.d')}"`)
    expect(res.stdout).toMatch(/b: the first broken link is containerd/)
    await writeFile(join(b.root, 'etc/containerd/config.toml'), `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${join(b.root, 'etc/containerd/certs.d')}"\n`)
    const fixed = await dfctl(['doctor', '-i', inventoryFile, '--host', 'b'])
    expect(fixed.code, fixed.stdout).toBe(0)
    expect(fixed.stdout).toMatch(/ok {3}supernode: .* accepts the cluster key/)
    expect(fixed.stdout).toMatch(/ok {3}pull: pulled shoal\/gate:1 through the mirror, digests checked; bytes by source: /)
    expect(fixed.stdout).toMatch(/ok {3}peer: a's P2P port 127\.0\.0\.1:\d+ is reachable/)
    expect(fixed.stdout).toMatch(/b: every link works/)
  })

  it('doctor names a dockerd that does not use the mirror, from docker info, not the file', async () => {
    const [a] = hosts as [TestHost]
    const ok = await dfctl(['doctor', '-i', inventoryFile, '--host', 'a'])
    expect(ok.stdout).toMatch(/ok {3}dockerd: docker info lists the mirror/)
    // something else rewrites daemon.json without the mirror and reloads dockerd: the file and dockerd agree, pulls bypass Shoal
    const file = join(a.root, 'etc/docker/daemon.json')
    await writeFile(file, JSON.stringify({ 'log-driver': 'json-file', debug: true, 'registry-mirrors': ['https://mirror.example.com'] }, null, 2))
    process.kill(Number(await readFile(join(a.root, 'var/run/docker.pid'), 'utf8')), 'SIGHUP')
    const deadline = Date.now() + 10_000
    while ((await dockerd.mirrors()).includes(`http://${a.listen}/`) && Date.now() < deadline) {
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    const res = await dfctl(['doctor', '-i', inventoryFile, '--host', 'a'])
    expect(res.code).toBe(1)
    expect(res.stdout).toMatch(/FAIL dockerd: dockerd is not using the mirror: docker info lists registry mirrors \[https:\/\/mirror\.example\.com\/\]/)
    expect(res.stdout).toMatch(/a: the first broken link is dockerd/)
    const status = await dfctl(['status', '-i', inventoryFile, '--hosts', 'a'])
    expect(status.stdout).toMatch(/dockerd:NO/)
    // the rollout puts it back
    const again = await dfctl(['rollout', '-i', inventoryFile, '--hosts', 'a'])
    expect(again.code, again.stdout).toBe(0)
    expect(await dockerd.mirrors()).toContain(`http://${a.listen}/`)
  })

  it('doctor names a wrong cluster key', async () => {
    const wrongKey = join(dir, 'other-cluster.key')
    await writeClusterKeyFile(wrongKey)
    const wrong = join(dir, 'inventory-wrong-key.yaml')
    await writeFile(wrong, stringify(inventory({ clusterKeyFile: wrongKey })))
    // the gate passes: without the swarm, the daemon still pulls from the registry
    const rolled = await dfctl(['rollout', '-i', wrong, '--hosts', 'b'])
    expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0)
    const res = await dfctl(['doctor', '-i', wrong, '--host', 'b'])
    expect(res.code).toBe(1)
    expect(res.stdout).toMatch(/FAIL supernode: the supernode \/ip4\/127\.0\.0\.1\/tcp\/\d+ accepts TCP from this host but drops the daemon's connection: the cluster key differs/)
    expect(res.stdout).toMatch(/b: the first broken link is supernode/)
  })

  it('the gate pulls from a registry that asks for a token even for public images, as Docker Hub does', async () => {
    const file = join(dir, 'inventory-hub.yaml')
    await writeFile(file, stringify(inventory({ a: { registry: hub.url }, gateImage: 'shoal/public:1' })))
    const res = await dfctl(['rollout', '-i', file, '--hosts', 'a'])
    expect(res.code, res.stdout + res.stderr).toBe(0)
    expect(res.stdout).toMatch(/a: changed: .*gate: healthy, pulled shoal\/public:1 through the mirror \(2 blobs/)
    expect(tokens.issued).toContain('')
    // back to the shared registry for whatever runs next
    const back = await dfctl(['rollout', '-i', inventoryFile, '--hosts', 'a'])
    expect(back.code, back.stdout).toBe(0)
  })

  it('proxyListen: the rollout installs the daemon\'s proxy CA as dockerd\'s certs.d/<registry>/ca.crt (dry-run shows it, a failed gate puts back what was there); doctor names a dockerd without the proxy and finds one started with it', async () => {
    const [a] = hosts as [TestHost]
    const proxyListen = `127.0.0.1:${await freePort()}`
    const upstreams = [{ name: 'registry.example.com', url: registry.url }]
    const certsD = join(a.root, 'etc/docker/certs.d')
    const caFile = join(a.root, 'var/lib/shoal/dfget/proxy/ca.crt')
    const proxied = [new URL(registry.url).host, 'registry.example.com']
    // what a had: a CA of its own for registry.example.com, which a rollback must put back
    await mkdir(join(certsD, 'registry.example.com'), { recursive: true })
    await writeFile(join(certsD, 'registry.example.com/ca.crt'), 'the CA a had before\n', { mode: 0o644 })
    const etc = async (): Promise<Array<[string, string, number]>> => withoutTimes(await snapshot(join(a.root, 'etc')))
    const before = await etc()
    const file = join(dir, 'inventory-proxy.yaml')
    await writeFile(file, stringify(inventory({ a: { proxyListen, upstreams } })))

    const plan = await dfctl(['rollout', '-i', file, '--hosts', 'a', '--dry-run'])
    expect(plan.code, plan.stderr).toBe(0)
    expect(plan.stdout).toContain(`file ${join(certsD, proxied[0]!, 'ca.crt')} (new, mode 644): the daemon's proxy CA ${caFile}, installed once the daemon has started and generated it`)
    expect(plan.stdout).toContain(`file ${join(certsD, 'registry.example.com/ca.crt')}: the daemon's proxy CA ${caFile}`)
    // no systemd under a root prefix: the plan says what dockerd's environment needs
    expect(plan.stdout).toContain(`dockerd's environment: no systemd here, so whoever starts dockerd must give it HTTPS_PROXY=http://${proxyListen} HTTP_PROXY=http://${proxyListen} NO_PROXY=`)
    expect(await etc()).toEqual(before)

    // the CA goes in once the daemon is up; the gate then fails (an upstream nothing listens on): all put back
    const bad = join(dir, 'inventory-proxy-bad.yaml')
    const nowhere = `127.0.0.1:${await freePort()}`
    await writeFile(bad, stringify(inventory({ a: { proxyListen, upstreams, registry: `http://${nowhere}` } })))
    const failed = await dfctl(['rollout', '-i', bad, '--hosts', 'a'])
    expect(failed.code).toBe(1)
    expect(failed.stdout).toMatch(/a: FAILED: .*rolled back to what it had/)
    expect(await etc()).toEqual(before)
    const backups = join(a.root, 'var/lib/shoal/backups')
    const backedUp = await Promise.all((await readdir(backups)).map(async d => readFile(join(backups, d, 'etc/docker/certs.d/registry.example.com/ca.crt'), 'utf8').catch(() => null)))
    expect(backedUp).toContain('the CA a had before\n')

    const res = await dfctl(['rollout', '-i', file, '--hosts', 'a'])
    expect(res.code, res.stdout + res.stderr).toBe(0)
    expect(res.stdout).toMatch(/a: changed: .*installed the proxy CA as /)
    const ca = await readFile(caFile, 'utf8')
    expect(ca).toContain('-----BEGIN CERTIFICATE-----')
    for (const name of proxied) {
      expect(await readFile(join(certsD, name, 'ca.crt'), 'utf8'), name).toBe(ca)
      expect((await stat(join(certsD, name, 'ca.crt'))).mode & 0o777).toBe(0o644)
    }
    const again = await dfctl(['rollout', '-i', file, '--hosts', 'a'])
    expect(again.stdout).toMatch(/a: unchanged/)

    // the running dockerd was started without the proxy: doctor says so, from docker info
    const doctor = await dfctl(['doctor', '-i', file, '--host', 'a'])
    expect(doctor.code).toBe(1)
    expect(doctor.stdout).toContain(`FAIL dockerd proxy: dockerd's HTTPS proxy is not set (docker info), not the daemon's proxy http://${proxyListen}`)
    expect(doctor.stdout).toMatch(/a: the first broken link is dockerd proxy/)
    // dockerd started with the proxy, as the drop-in would: doctor finds it in docker info
    await dockerd.stop()
    dockerd = await startDockerd(join(dir, 'dockerd-a'), null, {
      configFile: join(a.root, 'etc/docker/daemon.json'), pidFile: join(a.root, 'var/run/docker.pid'), socket: join(a.root, 'var/run/docker.sock'),
      env: { HTTPS_PROXY: `http://${proxyListen}`, HTTP_PROXY: `http://${proxyListen}`, NO_PROXY: 'localhost,127.0.0.0/8,::1' }
    })
    const withProxy = await dfctl(['doctor', '-i', file, '--host', 'a'])
    expect(withProxy.stdout).toContain(`ok   dockerd proxy: docker info: HTTPS Proxy http://${proxyListen}, the daemon's proxy (proxyListen)`)

    const back = await dfctl(['rollout', '-i', inventoryFile, '--hosts', 'a'])
    expect(back.code, back.stdout).toBe(0)
  })

  it('doctor names a host it cannot reach over SSH before anything else', async () => {
    const file = join(dir, 'inventory-no-ssh.yaml')
    const closed = await freePort()
    await writeFile(file, (await readFile(inventoryFile, 'utf8')).replace(`"port": ${hosts[0]!.sshd.port}`, `"port": ${closed}`))
    const res = await dfctl(['doctor', '-i', file, '--host', 'a'])
    expect(res.code).toBe(1)
    expect(res.stdout).toMatch(new RegExp(`FAIL host: cannot run commands on a: ssh to root@127\\.0\\.0\\.1:${closed} failed`))
    expect(res.stdout).toMatch(/a: the first broken link is host/)
  })

  it('rejects a bad inventory naming the line and the field', async () => {
    const file = join(dir, 'inventory-invalid.yaml')
    await copyFile(inventoryFile, file)
    const text = (await readFile(file, 'utf8')).replace(`"port": ${hosts[1]!.sshd.port}`, '"port": "seventy"').replace(/^\{/, '{\n  "extra": 1,')
    await writeFile(file, text)
    const line = text.split('\n').findIndex(l => l.includes('"seventy"')) + 1
    const res = await dfctl(['rollout', '-i', file, '--dry-run'])
    expect(res.code).toBe(2)
    expect(res.stderr).toContain(`${file}:${line}:`)
    expect(res.stderr).toMatch(/hosts\[1\]\.ssh\.port: .*number/)
    expect(res.stderr).toContain(`${file}:2:`)
    expect(res.stderr).toMatch(/extra: Unrecognized key/)
  })
})
