import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadInventory, selectHosts } from '../src/inventory/index.ts'
import { containerdConfigPath } from '../src/fleet/doctor.ts'
import { daemonConfig, dockerDaemonJson, mirroredRegistries } from '../src/rollout/desired.ts'
import { dockerCaFiles, dockerProxyDropIn, dockerProxyUrl, proxyCaPath } from '../src/rollout/docker-proxy.ts'

const VALID = `clusterKeyFile: cluster.key
supernodes: [/ip4/10.0.0.5/tcp/8003]
daemon:
  registry: https://registry-1.docker.io
  listen: 0.0.0.0:65001
  upstreams:
    - { name: registry.example.com:5000, url: https://registry.example.com:5000 }
groups:
  web: [web-1, web-2]
hosts:
  - name: web-1
    address: 10.0.3.11
    ssh: { key: id_ed25519 }
    idc: fra1
    location: eu|fra|rack7
    labels: { rack: r7 }
    runtimes: [dockerd, containerd]
  - name: web-2
    address: 10.0.3.12
    ssh: { key: ~/.ssh/shoal_ed25519, port: 2222 }
    labels: { rack: r8 }
    daemon: { listen: 127.0.0.1:7001 }
  - name: db-1
    address: 10.0.4.1
    executor: local
    labels: { rack: r7 }
`

describe('inventory', () => {
  let dir: string
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-inventory-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  async function load (text: string): Promise<ReturnType<typeof loadInventory>> {
    const file = join(dir, `inv-${Math.random().toString(36).slice(2)}.yaml`)
    await writeFile(file, text)
    return loadInventory(file)
  }

  it('loads hosts with the contract shape, paths resolved against the inventory', async () => {
    const inv = await load(VALID)
    const [web1, web2] = inv.hosts
    expect(inv.clusterKeyFile).toBe(join(dir, 'cluster.key'))
    expect(web1).toMatchObject({ name: 'web-1', address: '10.0.3.11', ssh: { user: 'root', port: 22, key: join(dir, 'id_ed25519') }, idc: 'fra1', location: 'eu|fra|rack7', labels: { rack: 'r7' }, runtimes: ['dockerd', 'containerd'], groups: ['web'] })
    // no daemonApi given: dfctl asks the daemon from the host, over SSH
    expect(web1?.daemonApi).toBeUndefined()
    expect(web2?.ssh.key).toBe(join(homedir(), '.ssh/shoal_ed25519'))
    expect(web2?.daemonApi).toBeUndefined()
    expect(web2?.daemon.listen).toBe('127.0.0.1:7001')
    expect(web2?.daemon.registry).toBe('https://registry-1.docker.io')
  })

  it('names the line, column and field of every problem', async () => {
    const bad = VALID.replace('port: 2222', 'port: many').replace('    idc: fra1\n', '    idc: fra1\n    rakc: r7\n').replace('web: [web-1, web-2]', 'web: [web-1, web-9]')
    const err = await load(bad).then(() => null, (e: Error) => e)
    expect(err?.name).toBe('InventoryError')
    const lines = bad.split('\n')
    const lineOf = (s: string): number => lines.findIndex(l => l.includes(s)) + 1
    expect(err?.message).toMatch(new RegExp(`:${lineOf('port: many')}:\\d+: hosts\\[1\\]\\.ssh\\.port: .*expected number`))
    expect(err?.message).toMatch(new RegExp(`:${lineOf('rakc')}:\\d+: hosts\\[0\\]\\.rakc: Unrecognized key`))
  })

  it('takes supernodes as addresses or { address, api }: the daemons get the addresses, prefetch the apis and the token file', async () => {
    const inv = await load(VALID.replace('supernodes: [/ip4/10.0.0.5/tcp/8003]', 'supernodes:\n  - /ip4/10.0.0.5/tcp/8003\n  - { address: /ip4/10.0.0.6/tcp/8003, api: "http://10.0.0.6:8002/" }\npreheatTokenFile: preheat.token'))
    expect(inv.supernodes).toEqual(['/ip4/10.0.0.5/tcp/8003', '/ip4/10.0.0.6/tcp/8003'])
    expect(inv.supernodeApis).toEqual(['http://10.0.0.6:8002'])
    expect(inv.preheatTokenFile).toBe(join(dir, 'preheat.token'))
    expect(daemonConfig(inv, inv.hosts[0]!)).toContain('supernode:\n  - /ip4/10.0.0.5/tcp/8003\n  - /ip4/10.0.0.6/tcp/8003\n')
    expect(daemonConfig(inv, inv.hosts[0]!)).not.toContain('preheat')
    const orphan = await load(VALID.replace('supernodes: [/ip4/10.0.0.5/tcp/8003]', 'supernodes: [/ip4/10.0.0.5/tcp/8003]\npreheatTokenFile: preheat.token')).then(() => null, (e: Error) => e)
    expect(orphan?.message).toMatch(/:3:\d+: preheatTokenFile: no supernode has an api to preheat on/)
    const badApi = await load(VALID.replace('supernodes: [/ip4/10.0.0.5/tcp/8003]', 'supernodes:\n  - { address: /ip4/10.0.0.6/tcp/8003, api: sn-b:8002, extra: 1 }\npreheatTokenFile: preheat.token')).then(() => null, (e: Error) => e)
    expect(badApi?.message).toMatch(/:3:\d+: supernodes\[0\]/)
  })

  it('names a group member that is not a host, and a missing ssh key', async () => {
    const bad = VALID.replace('web: [web-1, web-2]', 'web: [web-1, web-9]').replace('    ssh: { key: ~/.ssh/shoal_ed25519, port: 2222 }\n', '')
    const err = await load(bad).then(() => null, (e: Error) => e)
    expect(err?.message).toMatch(/:9:\d+: groups\.web\[1\]: no host named web-9/)
    expect(err?.message).toMatch(/hosts\[1\]\.ssh: ssh\.key is required for the ssh executor/)
  })

  it('selects by hosts, group and labels together', async () => {
    const inv = await load(VALID)
    expect(selectHosts(inv).map(h => h.name)).toEqual(['web-1', 'web-2', 'db-1'])
    expect(selectHosts(inv, { group: 'web' }).map(h => h.name)).toEqual(['web-1', 'web-2'])
    expect(selectHosts(inv, { labels: { rack: 'r7' } }).map(h => h.name)).toEqual(['web-1', 'db-1'])
    expect(selectHosts(inv, { group: 'web', labels: { rack: 'r7' } }).map(h => h.name)).toEqual(['web-1'])
    expect(() => selectHosts(inv, { hosts: ['nope'] })).toThrow(/no host named nope/)
    expect(() => selectHosts(inv, { group: 'db' })).toThrow(/no group named db/)
    expect(() => selectHosts(inv, { group: 'web', labels: { rack: 'r9' } })).toThrow(/no host of the inventory matches/)
  })

  it('writes the daemon config with the host\'s idc and location, and mirrors every upstream', async () => {
    const inv = await load(VALID)
    const web1 = inv.hosts[0]!
    const config = daemonConfig(inv, web1)
    expect(config).toMatch(/^idc: fra1$/m)
    expect(config).toMatch(/^location: eu\|fra\|rack7$/m)
    expect(config).toMatch(/^hostname: web-1$/m)
    expect(config).toMatch(/^clusterKey: \/etc\/shoal\/cluster.key$/m)
    expect(mirroredRegistries(web1)).toEqual([{ name: 'docker.io', server: 'https://registry-1.docker.io' }, { name: 'registry.example.com:5000', server: 'https://registry.example.com:5000' }])
  })
})

describe('daemon.json merge', () => {
  const mirror = 'http://127.0.0.1:65001'
  it('puts the mirror first and keeps every other key', () => {
    const out = JSON.parse(dockerDaemonJson(Buffer.from('{"debug":true,"registry-mirrors":["https://m.example"],"log-opts":{"max-size":"10m"}}'), mirror, 'daemon.json')) as Record<string, unknown>
    expect(out).toEqual({ debug: true, 'registry-mirrors': [mirror, 'https://m.example'], 'log-opts': { 'max-size': '10m' } })
  })
  it('leaves a file that already has the mirror byte for byte', () => {
    const text = '{ "registry-mirrors": ["http://127.0.0.1:65001/"], "debug": false }'
    expect(dockerDaemonJson(Buffer.from(text), mirror, 'daemon.json')).toBe(text)
  })
  it('refuses a file that is not a JSON object rather than overwrite it', () => {
    expect(() => dockerDaemonJson(Buffer.from('{ nope'), mirror, '/etc/docker/daemon.json')).toThrow(/\/etc\/docker\/daemon.json is not valid JSON/)
    expect(() => dockerDaemonJson(Buffer.from('[]'), mirror, 'daemon.json')).toThrow(/not a JSON object/)
  })
})

describe('containerd config_path', () => {
  it('reads the CRI registry config_path of containerd 1.x and 2.x, not another section\'s', () => {
    expect(containerdConfigPath('[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n')).toBe('/etc/containerd/certs.d')
    expect(containerdConfigPath('[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"\n')).toBe('/etc/containerd/certs.d:/etc/docker/certs.d')
    expect(containerdConfigPath('[plugins."other".registry]\n  config_path = "/x"\n')).toBeUndefined()
  })
})

describe('dockerd through the proxy', () => {
  const daemon = { registry: 'https://registry-1.docker.io', proxyListen: '0.0.0.0:65003', upstreams: [{ name: 'registry.example.com:5000', url: 'https://registry.example.com:5000' }] }
  it('only with proxyListen on a dockerd host; a wildcard listener is reached on loopback', () => {
    expect(dockerProxyUrl({ daemon, runtimes: ['dockerd'] })).toBe('http://127.0.0.1:65003')
    expect(dockerProxyUrl({ daemon: { ...daemon, proxyListen: '127.0.0.2:7000' }, runtimes: ['containerd', 'dockerd'] })).toBe('http://127.0.0.2:7000')
    expect(dockerProxyUrl({ daemon, runtimes: ['containerd'] })).toBeUndefined()
    expect(dockerProxyUrl({ daemon: { registry: daemon.registry }, runtimes: ['dockerd'] })).toBeUndefined()
  })

  it('the systemd drop-in gives dockerd HTTPS_PROXY, HTTP_PROXY and NO_PROXY', () => {
    const dropIn = dockerProxyDropIn('http://127.0.0.1:65003')
    expect(dropIn).toMatch(/^\[Service\]$/m)
    expect(dropIn).toContain('Environment="HTTPS_PROXY=http://127.0.0.1:65003"\n')
    expect(dropIn).toContain('Environment="HTTP_PROXY=http://127.0.0.1:65003"\n')
    expect(dropIn).toContain('Environment="NO_PROXY=localhost,127.0.0.0/8,::1"\n')
  })

  it('installs the CA for every proxied registry but Docker Hub, from <dataDir>/proxy/ca.crt', () => {
    expect(dockerCaFiles({ daemon })).toEqual(['/etc/docker/certs.d/registry.example.com:5000/ca.crt'])
    expect(dockerCaFiles({ daemon: { ...daemon, registry: 'https://ghcr.io' } })).toEqual(['/etc/docker/certs.d/ghcr.io/ca.crt', '/etc/docker/certs.d/registry.example.com:5000/ca.crt'])
    expect(proxyCaPath({ daemon, root: '/srv/h' })).toBe('/srv/h/var/lib/shoal/dfget/proxy/ca.crt')
    expect(proxyCaPath({ daemon: { dataDir: '/data/shoal' }, root: '' })).toBe('/data/shoal/proxy/ca.crt')
  })
})
