/**
 * What the inventory may not smuggle onto a host: ssh options in `address`, paths in
 * upstream names; and the ssh command line dfctl builds from a host.
 */
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { SshExecutor } from '../src/exec/ssh.ts'
import { loadInventory } from '../src/inventory/index.ts'
import { mirroredRegistries } from '../src/rollout/desired.ts'

const BASE = `clusterKeyFile: cluster.key
daemon:
  upstreams:
    - { name: registry.example.com:5000, url: https://registry.example.com:5000 }
hosts:
  - name: web-1
    address: 10.0.3.11
    ssh: { key: id_ed25519 }
  - name: web-2
    address: web-2.example.com
    ssh: { key: id_ed25519 }
  - name: web-3
    address: fd00::3
    ssh: { key: id_ed25519 }
`

describe('inventory safety', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-inventory-safety-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  async function load (text: string): Promise<ReturnType<typeof loadInventory>> {
    const file = join(dir, `inv-${Math.random().toString(36).slice(2)}.yaml`)
    await writeFile(file, text)
    return loadInventory(file)
  }

  it('accepts host names and IP addresses', async () => {
    expect((await load(BASE)).hosts.map(h => h.address)).toEqual(['10.0.3.11', 'web-2.example.com', 'fd00::3'])
  })

  it('refuses an address that is an ssh option or holds spaces, naming line and field', async () => {
    const bad = BASE.replace('address: 10.0.3.11', 'address: "-oProxyCommand=touch /tmp/x"').replace('address: web-2.example.com', 'address: "web-2 -p 1"')
    const err = await load(bad).catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    expect((err as Error).message).toMatch(/inv-\w+\.yaml:7:\d+: hosts\[0\]\.address: must be a host name or an IP address/)
    expect((err as Error).message).toMatch(/:10:\d+: hosts\[1\]\.address: must be a host name or an IP address/)
  })

  it('refuses upstream names that are not host[:port], in the inventory and in a host', async () => {
    const bad = BASE.replace('name: registry.example.com:5000', 'name: ../../../etc/cron.d')
      .replace('    ssh: { key: id_ed25519 }\n  - name: web-3', '    ssh: { key: id_ed25519 }\n    daemon: { upstreams: [{ name: "a/b", url: "https://a" }] }\n  - name: web-3')
    const err = await load(bad).catch((e: Error) => e)
    expect((err as Error).message).toMatch(/:4:\d+: daemon\.upstreams\[0\]\.name: must be the registry host/)
    expect((err as Error).message).toMatch(/:12:\d+: hosts\[1\]\.daemon\.upstreams\[0\]\.name: must be the registry host/)
    // and never a path, even from an inventory built in code
    expect(() => mirroredRegistries({ daemon: { upstreams: [{ name: '../x', url: 'https://x' }] } })).toThrow(/not a registry host/)
  })

  describe('the ssh command line', () => {
    let bin: string
    let log: string
    let path: string | undefined
    beforeAll(async () => {
      // an ssh that records its argv: this test is about what dfctl asks of ssh, not about ssh
      bin = join(dir, 'bin')
      log = join(dir, 'ssh-argv')
      await mkdir(bin)
      await writeFile(join(bin, 'ssh'), `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > ${log}\n`)
      await chmod(join(bin, 'ssh'), 0o755)
      path = process.env.PATH
      process.env.PATH = `${bin}:${path ?? ''}`
    })
    afterAll(() => { process.env.PATH = path })

    it('checks host keys strictly and puts -- before the destination', async () => {
      const exec = new SshExecutor({ host: 'h', address: 'web-1.example.com', user: 'root', port: 22, key: '/k' })
      try {
        await exec.run('true')
        const argv = (await readFile(log, 'utf8')).trimEnd().split('\n')
        expect(argv.join(' ')).toContain('-o StrictHostKeyChecking=yes')
        const dash = argv.indexOf('--')
        expect(dash).toBeGreaterThan(0)
        expect(argv.slice(dash + 1)).toEqual(['web-1.example.com', "sh -c 'true'"])
      } finally {
        await exec.close()
      }
    })
  })
})
