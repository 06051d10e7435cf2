/**
 * The rollout's defences against what it reads: a hostile manifest in the gate, a
 * symlinked daemon.json, passwords in the daemon config, a fresh host, an interrupted
 * rollout. Hosts are directories under a root prefix, commands run by the local shell.
 */
import { createServer, type Server } from 'node:http'
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LocalExecutor } from '../src/exec/index.ts'
import type { Host, Inventory } from '../src/inventory/load.ts'
import { testPull } from '../src/rollout/gate.ts'
import { readFiles } from '../src/rollout/host-files.ts'
import { applyHost, describePlan, planHost } from '../src/rollout/host-rollout.ts'

const exec = new LocalExecutor('local')
const bundle = { path: '/nonexistent/shoal-1.0.0-linux-x64.tar.gz', version: '1.0.0', release: '1.0.0-0123456789ab' }
const KEY = Buffer.alloc(32, 7)

describe('rollout safety', () => {
  let dir: string
  let n = 0
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-rollout-safety-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  async function hostRoot (): Promise<string> {
    const root = join(dir, `host-${n++}`)
    await mkdir(root)
    return root
  }

  function host (root: string, daemon: Record<string, unknown> = {}, runtimes: Host['runtimes'] = []): Host {
    return { name: 'h', address: '127.0.0.1', executor: 'local', ssh: { user: 'root', port: 22 }, labels: {}, runtimes, root, daemon, daemonApi: 'http://127.0.0.1:1', groups: [] }
  }

  function inventory (h: Host, gate: Inventory['gate'] = {}): Inventory {
    return { file: join(dir, 'inventory.yaml'), clusterKeyFile: join(dir, 'cluster.key'), supernodes: [], supernodeApis: [], daemon: {}, gate, groups: {}, hosts: [h] }
  }

  describe('the gate refuses a malformed digest before it reaches a shell', () => {
    let server: Server
    let url: string
    let marker: string
    beforeAll(async () => {
      marker = join(dir, 'pwned')
      const manifest = JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { digest: `sha256:${'a'.repeat(64)}`, size: 2 },
        layers: [{ digest: `sha256:$(touch ${marker})`, size: 2 }]
      })
      server = createServer((req, res) => {
        if (req.url?.includes('/manifests/') === true) {
          res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest)
        } else {
          res.writeHead(200).end('{}')
        }
      })
      await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    })
    afterAll(async () => { await new Promise(resolve => server.close(resolve)) })

    it('fails the gate naming the digest, and runs nothing', async () => {
      await expect(testPull(exec, url, 'library/evil:1', { timeout: 10_000 })).rejects.toThrow(/malformed digest "sha256:\$\(touch /)
      await expect(stat(marker)).rejects.toThrow(/ENOENT/)
    })
  })

  it('refuses a symlinked daemon.json under a root prefix, leaving the target and its mode alone', async () => {
    const root = await hostRoot()
    await mkdir(join(root, 'etc/docker'), { recursive: true })
    const target = join(root, 'etc/docker/real.json')
    await writeFile(target, '{"debug":true}\n', { mode: 0o640 })
    await symlink('real.json', join(root, 'etc/docker/daemon.json'))
    await expect(readFiles(exec, [join(root, 'etc/docker/daemon.json')])).rejects.toThrow(/daemon\.json is a symbolic link \(to real\.json\)/)
    const h = host(root, {}, ['dockerd'])
    await expect(planHost(exec, inventory(h), h, bundle, KEY)).rejects.toThrow(/is a symbolic link/)
    expect(await readFile(target, 'utf8')).toBe('{"debug":true}\n')
    expect((await stat(target)).mode & 0o777).toBe(0o640)
    expect((await lstat(join(root, 'etc/docker/daemon.json'))).isSymbolicLink()).toBe(true)
  })

  it('plans a fresh host: no current release, the config 0600, passwords hidden in the plan', async () => {
    const root = await hostRoot()
    const h = host(root, { listen: '127.0.0.1:1', upstreams: [{ name: 'registry.example.com', url: 'https://registry.example.com', username: 'u', password: 's3cret-pw' }] })
    const plan = await planHost(exec, inventory(h), h, bundle, KEY)
    expect(plan.currentRelease).toBeNull()
    expect(plan.releasePresent).toBe(false)
    const config = plan.files.find(f => f.role === 'config')
    expect(config?.mode).toBe(0o600)
    expect(config?.after.toString()).toContain('s3cret-pw')
    const text = describePlan(plan)
    expect(text).toContain('release: none -> 1.0.0-0123456789ab')
    expect(text).toContain('password: (hidden)')
    expect(text).not.toContain('s3cret-pw')
    // a password over several lines is a block scalar in YAML: every line of it hidden
    const multi = host(root, { upstreams: [{ name: 'r.example.com', url: 'https://r.example.com', password: 'line-one\nline-two' }] })
    const multiText = describePlan(await planHost(exec, inventory(multi), multi, bundle, KEY))
    expect(multiText).toContain('password: (hidden)')
    expect(multiText).not.toMatch(/line-one|line-two/)
    expect(multiText).toContain('url: https://r.example.com')
  })

  it('reads an absolute current link as the release it names', async () => {
    const root = await hostRoot()
    await mkdir(join(root, 'opt/shoal/releases/0.9.0-aaaaaaaaaaaa'), { recursive: true })
    await symlink(join(root, 'opt/shoal/releases/0.9.0-aaaaaaaaaaaa'), join(root, 'opt/shoal/current'))
    const h = host(root)
    expect((await planHost(exec, inventory(h), h, bundle, KEY)).currentRelease).toBe('0.9.0-aaaaaaaaaaaa')
  })

  it('rolls an interrupted host back under its own deadline; backups are 0600', async () => {
    const root = await hostRoot()
    // the release is there and current: only the config changes, then the gate waits for a daemon that never answers
    await mkdir(join(root, `opt/shoal/releases/${bundle.release}`), { recursive: true })
    await writeFile(join(root, `opt/shoal/releases/${bundle.release}/VERSION`), '1.0.0\n')
    await symlink(`releases/${bundle.release}`, join(root, 'opt/shoal/current'))
    await mkdir(join(root, 'etc/shoal'), { recursive: true })
    await writeFile(join(root, 'etc/shoal/dfget.yaml'), 'logLevel: info\n', { mode: 0o644 })
    await writeFile(join(root, 'etc/shoal/cluster.key'), KEY, { mode: 0o600 })
    const h = host(root, { listen: '127.0.0.1:1', upstreams: [{ name: 'registry.example.com', url: 'https://registry.example.com', password: 'pw' }] })
    const inv = inventory(h, { timeout: 30_000 })
    const plan = await planHost(exec, inv, h, bundle, KEY)
    expect(plan.currentRelease).toBe(bundle.release)
    // Ctrl-C while the gate waits
    const outcome = await applyHost(exec, inv, plan, bundle, { signal: AbortSignal.timeout(1500) })
    expect(outcome.state).toBe('failed')
    expect(outcome.error).toBeDefined()
    expect(outcome.rolledBack).toBe(true)
    expect(await readFile(join(root, 'etc/shoal/dfget.yaml'), 'utf8')).toBe('logLevel: info\n')
    expect((await stat(join(root, 'etc/shoal/dfget.yaml'))).mode & 0o777).toBe(0o644)
    // the supervisor's directory was made for this rollout: gone again; those the host had stay
    expect(plan.newDirs).toEqual([join(root, 'opt/shoal/bin')])
    await expect(stat(join(root, 'opt/shoal/bin'))).rejects.toThrow(/ENOENT/)
    expect((await stat(join(root, 'etc/shoal'))).isDirectory()).toBe(true)
    const [backup] = await readdir(join(root, 'var/lib/shoal/backups'))
    expect(backup).toBeDefined()
    for (const f of ['etc/shoal/dfget.yaml', 'current-release']) {
      expect((await stat(join(root, 'var/lib/shoal/backups', backup ?? '', f))).mode & 0o777).toBe(0o600)
    }
  })
})
