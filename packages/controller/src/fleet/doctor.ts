import { setTimeout as sleep } from 'node:timers/promises'
import { PATHS } from '../constants.ts'
import { sh, type Executor } from '../exec/index.ts'
import type { Host, Inventory } from '../inventory/load.ts'
import { hostPath, localDaemonUrl, mirroredRegistries } from '../rollout/desired.ts'
import { dockerProxyUrl, DOCKER_NO_PROXY } from '../rollout/docker-proxy.ts'
import { testPull } from '../rollout/gate.ts'
import { bytesBySource, hostGet, parseMetrics, tcpReachable, tcpTarget } from './probe.ts'

/** One link of the chain a pull depends on. */
export interface Check {
  name: string
  ok: boolean
  /** What was seen. */
  detail: string
  /** When broken: what to do. */
  fix?: string
}

interface DaemonStatus {
  version?: string
  peerId?: string
  addrs?: string[]
  supernodes?: Array<{ address: string, state: 'ok' | 'unreachable' | 'unknown', error?: string }>
}

export interface DoctorComponents {
  /** How to reach any host of the inventory (the peer check asks the other hosts for their P2P addresses). */
  executor: (host: Host) => Executor
}

/** The CRI registry config_path containerd reports (1.x `grpc.v1.cri`, 2.x `cri.v1.images`), from its merged config. */
export function containerdConfigPath (dump: string): string | undefined {
  let section = ''
  for (const line of dump.split('\n')) {
    const header = /^\s*\[(.+)\]\s*$/.exec(line)
    if (header?.[1] != null) {
      section = header[1]
      continue
    }
    const m = /^\s*config_path\s*=\s*"([^"]*)"/.exec(line)
    if (m != null && /^plugins\."io\.containerd\.(grpc\.v1\.cri|cri\.v1\.images)"\.registry$/.test(section)) {
      return m[1]
    }
  }
  return undefined
}

async function runtimeChecks (exec: Executor, host: Host, signal?: AbortSignal): Promise<Check[]> {
  const mirror = localDaemonUrl(host)
  const so = signal != null ? { signal } : {}
  const checks: Check[] = []
  if (host.runtimes.length === 0) {
    checks.push({ name: 'runtime', ok: true, detail: 'the inventory names no runtime for this host (dfget and the API only)' })
  }
  if (host.runtimes.includes('dockerd')) {
    // what the running dockerd uses, not what the file says
    const socket = hostPath(host, PATHS.dockerSocket)
    // two lines: the mirrors, then the HTTPS proxy dockerd was started with
    const res = await exec.run(`docker -H ${sh(`unix://${socket}`)} info --format '{{json .RegistryConfig.Mirrors}}{{println}}{{json .HTTPSProxy}}'`, { timeout: 20_000, ...so })
    if (res.code !== 0) {
      checks.push({ name: 'dockerd', ok: false, detail: `docker info failed: ${res.stderr.trim().split('\n')[0] ?? res.code}`, fix: `start dockerd (socket ${socket}) or install the docker CLI on the host` })
    } else {
      const [mirrorsLine = '', proxyLine = ''] = res.stdout.split('\n')
      let mirrors: string[] = []
      try { mirrors = (JSON.parse(mirrorsLine) as string[] | null) ?? [] } catch {}
      const ok = mirrors.some(m => m.replace(/\/+$/, '') === mirror)
      checks.push(ok
        ? { name: 'dockerd', ok, detail: `docker info lists the mirror ${mirror}` }
        : { name: 'dockerd', ok, detail: `dockerd is not using the mirror: docker info lists registry mirrors [${mirrors.join(', ')}], not ${mirror}, so its pulls bypass Shoal`, fix: `dfctl rollout --hosts ${host.name} (merges registry-mirrors into ${hostPath(host, PATHS.dockerDaemonJson)} and reloads dockerd); if the file already has it, reload dockerd: kill -HUP $(cat ${hostPath(host, PATHS.dockerPidFile)})` })
      const proxy = dockerProxyUrl(host)
      if (proxy != null) {
        let seen = ''
        try { seen = String(JSON.parse(proxyLine) ?? '') } catch {}
        const same = seen.replace(/\/+$/, '') === proxy
        checks.push(same
          ? { name: 'dockerd proxy', ok: true, detail: `docker info: HTTPS Proxy ${proxy}, the daemon's proxy (proxyListen)` }
          : {
              name: 'dockerd proxy',
              ok: false,
              detail: `dockerd's HTTPS proxy is ${seen === '' ? 'not set' : seen} (docker info), not the daemon's proxy ${proxy}, so its pulls from private registries bypass Shoal`,
              fix: `start dockerd with HTTPS_PROXY=${proxy} HTTP_PROXY=${proxy} NO_PROXY=${DOCKER_NO_PROXY}: where systemd runs, dfctl rollout --hosts ${host.name} writes ${PATHS.dockerProxyDropIn} and restarts dockerd; elsewhere, in whatever starts dockerd`
            })
      }
    }
  }
  if (host.runtimes.includes('containerd')) {
    const config = hostPath(host, PATHS.containerdConfig)
    const res = await exec.run(`if [ -f ${sh(config)} ]; then containerd --config ${sh(config)} config dump; else containerd config default; fi`, { timeout: 20_000, ...so })
    const certsD = hostPath(host, PATHS.containerdCertsD)
    const path = res.code === 0 ? containerdConfigPath(res.stdout) : undefined
    if (res.code !== 0) {
      checks.push({ name: 'containerd', ok: false, detail: `containerd config dump failed: ${res.stderr.trim().split('\n')[0] ?? res.code}`, fix: `fix ${config} (containerd cannot load it) or install containerd` })
    } else if (path == null || !path.split(':').includes(certsD)) {
      checks.push({ name: 'containerd', ok: false, detail: `containerd is not using the mirror: its CRI registry config_path is ${JSON.stringify(path ?? '')}, so it never reads ${certsD}/<registry>/hosts.toml`, fix: `set config_path = "${certsD}" under [plugins."io.containerd.grpc.v1.cri".registry] in ${config} and restart containerd` })
    } else {
      const files = mirroredRegistries(host).map(r => `${certsD}/${r.name}/hosts.toml`)
      const has = await exec.run(files.map(f => `grep -qF ${sh(`[host."${mirror}"]`)} ${sh(f)}`).join(' && '), so)
      checks.push(has.code === 0
        ? { name: 'containerd', ok: true, detail: `config_path ${path}; hosts.toml sends ${mirroredRegistries(host).map(r => r.name).join(', ')} to ${mirror}` }
        : { name: 'containerd', ok: false, detail: `containerd reads ${certsD}, but ${files.join(', ')} does not send pulls to ${mirror}`, fix: `dfctl rollout --hosts ${host.name}` })
    }
  }
  return checks
}

async function supernodeCheck (exec: Executor, host: Host, url: string, signal?: AbortSignal): Promise<Check> {
  const so = signal != null ? { signal } : {}
  // the daemon announces at start and every minute: wait for its first answer
  let status: DaemonStatus = {}
  for (let i = 0; i < 30; i++) {
    const res = await hostGet(exec, `${url}/api/v1/status`, so)
    try { status = JSON.parse(res.body) as DaemonStatus } catch {}
    if (status.supernodes == null || !status.supernodes.some(s => s.state === 'unknown')) {
      break
    }
    await sleep(1000, undefined, so)
  }
  if (status.supernodes == null) {
    return { name: 'supernode', ok: false, detail: 'the daemon does not report its supernodes (an older daemon)', fix: 'dfctl rollout with a current bundle' }
  }
  if (status.supernodes.length === 0) {
    return { name: 'supernode', ok: false, detail: 'the daemon has no supernode: every layer comes from the registry, none from peers', fix: 'list the supernodes in the inventory (supernodes:) and dfctl rollout' }
  }
  const ok = status.supernodes.find(s => s.state === 'ok')
  if (ok != null) {
    return { name: 'supernode', ok: true, detail: `${ok.address} answers and accepts the cluster key` }
  }
  const first = status.supernodes[0]!
  const target = tcpTarget(first.address)
  if (target != null && await tcpReachable(exec, host, target.host, target.port, so)) {
    return {
      name: 'supernode',
      ok: false,
      detail: `the supernode ${first.address} accepts TCP from this host but drops the daemon's connection: the cluster key differs (${first.error ?? first.state})`,
      fix: `give the host the cluster's key: point clusterKeyFile in the inventory at the key the supernodes use and dfctl rollout --hosts ${host.name}`
    }
  }
  return { name: 'supernode', ok: false, detail: `the supernode ${first.address} cannot be reached from this host (${first.error ?? first.state})`, fix: 'check that the supernode runs, its address in the inventory, and the firewall between them' }
}

/**
 * Checks, in order, the links a pull on `host` depends on, and stops at the first
 * broken one: the runtime's effective config, the daemon's health, the supernode and
 * the cluster key, a test pull through the mirror (bytes by source), a peer's P2P port.
 */
export async function doctorHost (c: DoctorComponents, inventory: Inventory, host: Host, options: { signal?: AbortSignal } = {}): Promise<Check[]> {
  const exec = c.executor(host)
  const so = options.signal != null ? { signal: options.signal } : {}
  const checks: Check[] = []
  const done = (): boolean => checks.some(ch => !ch.ok)
  try {
    // every other check runs on the host: first, can we get there at all
    const reach = await exec.run('true', { timeout: 30_000, ...so })
    if (reach.code !== 0) {
      checks.push({ name: 'host', ok: false, detail: `cannot run commands on ${host.name}: ${reach.stderr.trim() || `exit ${reach.code}`}`, fix: host.executor === 'ssh' ? `check the inventory's address, ssh.user, ssh.port, ssh.key and the host key in ${host.ssh.knownHostsFile ?? '~/.ssh/known_hosts'}` : 'check that sh runs here' })
      return checks
    }
    checks.push(...await runtimeChecks(exec, host, options.signal))
    if (done()) return checks
    const url = localDaemonUrl(host)
    const health = await hostGet(exec, `${url}/healthz`, so)
    checks.push(health.ok
      ? { name: 'daemon', ok: true, detail: `${url}/healthz answers` }
      : { name: 'daemon', ok: false, detail: `the daemon does not answer at ${url}/healthz: ${health.error}`, fix: `look at ${hostPath(host, PATHS.log)} (or journalctl -u shoal-dfget); dfctl rollout --hosts ${host.name} restarts it` })
    if (done()) return checks
    checks.push(await supernodeCheck(exec, host, url, options.signal))
    if (done()) return checks
    if (inventory.gate.image == null) {
      checks.push({ name: 'pull', ok: true, detail: 'skipped: no gate.image in the inventory' })
    } else {
      const before = bytesBySource(parseMetrics((await hostGet(exec, `${url}/metrics`, so)).body))
      try {
        const pull = await testPull(exec, url, inventory.gate.image, { timeout: inventory.gate.timeout ?? 60_000, ...so })
        const after = bytesBySource(parseMetrics((await hostGet(exec, `${url}/metrics`, so)).body))
        const by = Object.keys(after).map(k => `${k} ${(after[k] ?? 0) - (before[k] ?? 0)}`).join(', ')
        checks.push({ name: 'pull', ok: true, detail: `pulled ${pull.image} through the mirror, digests checked; bytes by source: ${by}` })
      } catch (err) {
        checks.push({ name: 'pull', ok: false, detail: `a pull of ${inventory.gate.image} through the mirror failed: ${(err as Error).message}`, fix: `look at ${hostPath(host, PATHS.log)}; the daemon's registry setting and its reach to the registry` })
      }
    }
    if (done()) return checks
    checks.push(await peerCheck(c, exec, inventory, host, so))
    return checks
  } finally {
    await exec.close()
  }
}

async function peerCheck (c: DoctorComponents, exec: Executor, inventory: Inventory, host: Host, so: { signal?: AbortSignal }): Promise<Check> {
  const others = inventory.hosts.filter(h => h.name !== host.name)
  if (others.length === 0) {
    return { name: 'peer', ok: true, detail: 'skipped: the only host of the inventory' }
  }
  const tried: string[] = []
  // at most 3 peers: one reachable is enough to show the P2P port is open both ways here
  for (const other of others.slice(0, 3)) {
    const oexec = c.executor(other)
    try {
      const res = await hostGet(oexec, `${localDaemonUrl(other)}/api/v1/status`, so)
      const addrs = res.ok ? ((JSON.parse(res.body) as DaemonStatus).addrs ?? []) : []
      const target = addrs.map(tcpTarget).find(t => t != null)
      if (target == null) {
        tried.push(`${other.name}: no P2P address (daemon down?)`)
        continue
      }
      if (await tcpReachable(exec, host, target.host, target.port, so)) {
        return { name: 'peer', ok: true, detail: `${other.name}'s P2P port ${target.host}:${target.port} is reachable` }
      }
      tried.push(`${other.name} at ${target.host}:${target.port} unreachable`)
    } finally {
      await oexec.close()
    }
  }
  return { name: 'peer', ok: false, detail: `no peer's P2P port is reachable from this host: ${tried.join('; ')}`, fix: 'open the daemons\' p2pListen port (65002 by default) between hosts, or set p2pAnnounce to an address peers can reach' }
}

/** The checks as text; the first broken link named with its fix. */
export function formatDoctor (host: string, checks: Check[]): string {
  const lines = checks.map(ch => `  ${ch.ok ? 'ok  ' : 'FAIL'} ${ch.name}: ${ch.detail}${ch.fix != null ? `\n       fix: ${ch.fix}` : ''}`)
  const broken = checks.find(ch => !ch.ok)
  return `${host}:\n${lines.join('\n')}\n${broken != null ? `${host}: the first broken link is ${broken.name}\n` : `${host}: every link works\n`}`
}
