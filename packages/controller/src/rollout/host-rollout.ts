import { createReadStream } from 'node:fs'
import { dirname } from 'node:path'
import { createTwoFilesPatch } from 'diff'
import { DEFAULT_GATE_TIMEOUT, PATHS, ROLLBACK_TIMEOUT } from '../constants.ts'
import { sh, type Executor } from '../exec/index.ts'
import type { Host, Inventory } from '../inventory/load.ts'
import type { Bundle } from './bundle-file.ts'
import { containerdHostsToml, daemonConfig, dockerDaemonJson, hostPath, localDaemonUrl, mirroredRegistries, SUPERVISOR_SCRIPT, systemdUnit } from './desired.ts'
import { dockerCaFiles, dockerProxyDropIn, dockerProxyEnvironment, dockerProxyUrl, proxyCaPath, restartDockerdUnit } from './docker-proxy.ts'
import { testPull, waitHealthy, type PullSummary } from './gate.ts'
import { HostCommandError } from '../errors.ts'
import { readFiles, restoreFile, runChecked, writeFile, type FileState } from './host-files.ts'
import { detectServiceManager, isRunning, reloadDockerd, startDaemon, stopDaemon, SUPERVISOR_PATH, type ServiceManager } from './service.ts'

type FileRole = 'config' | 'key' | 'service' | 'docker' | 'docker-env' | 'containerd'

/** Roles whose files are the runtimes', not the daemon's: changing them does not restart the daemon. */
const RUNTIME_ROLES: FileRole[] = ['docker', 'docker-env', 'containerd']

interface FileChange {
  path: string
  role: FileRole
  before: FileState
  after: string | Buffer
  mode: number
}

/** What a host needs to reach the desired state, from what it has now. */
export interface HostPlan {
  host: Host
  manager: ServiceManager
  /** The release directory name the bundle installs as (`<version>-<sha256 prefix>`). */
  release: string
  /** Whether that release is already unpacked on the host. */
  releasePresent: boolean
  /** What `current` points at now (relative to /opt/shoal), or null. */
  currentRelease: string | null
  files: FileChange[]
  /** Directories the rollout would create (none there now): a rollback removes those left empty. */
  newDirs?: string[]
  /**
   * dockerd's `certs.d/<registry>/ca.crt` files to (re)write with the daemon's proxy CA
   * once the daemon runs (it generates the CA on its first start with the proxy).
   */
  caFiles: FileState[]
  /** The proxy CA as the host has it now, if it does. */
  ca?: Buffer
  /** The daemon's proxy as dockerd reaches it, when proxyListen is set and the host runs dockerd. */
  proxy?: string
  running: boolean
  restart: boolean
  changed: boolean
}

/** Reads what the host has and works out what to change; changes nothing. */
export async function planHost (exec: Executor, inventory: Inventory, host: Host, bundle: Bundle, clusterKey: Buffer, options: { signal?: AbortSignal } = {}): Promise<HostPlan> {
  const manager = await detectServiceManager(exec, host, options)
  const mirror = localDaemonUrl(host)
  const wanted: Array<{ path: string, role: FileRole, mode: number, content: (before: FileState) => string | Buffer }> = [
    // 0600: upstreams[].password may be in it
    { path: PATHS.config, role: 'config', mode: 0o600, content: () => daemonConfig(inventory, host) },
    { path: PATHS.clusterKey, role: 'key', mode: 0o600, content: () => clusterKey },
    manager === 'systemd'
      ? { path: PATHS.unit, role: 'service', mode: 0o644, content: () => systemdUnit(host) }
      : { path: SUPERVISOR_PATH, role: 'service', mode: 0o755, content: () => SUPERVISOR_SCRIPT }
  ]
  if (host.runtimes.includes('dockerd')) {
    const path = hostPath(host, PATHS.dockerDaemonJson)
    wanted.push({ path: PATHS.dockerDaemonJson, role: 'docker', mode: 0o644, content: (before) => dockerDaemonJson(before.content, mirror, path) })
  }
  const proxy = dockerProxyUrl(host)
  if (proxy != null && manager === 'systemd') {
    wanted.push({ path: PATHS.dockerProxyDropIn, role: 'docker-env', mode: 0o644, content: () => dockerProxyDropIn(proxy) })
  }
  const caTargets = proxy != null ? dockerCaFiles(host).map(p => hostPath(host, p)) : []
  const caPath = proxyCaPath(host)
  if (host.runtimes.includes('containerd')) {
    for (const r of mirroredRegistries(host)) {
      wanted.push({ path: `${PATHS.containerdCertsD}/${r.name}/hosts.toml`, role: 'containerd', mode: 0o644, content: () => containerdHostsToml(r.server, mirror) })
    }
  }
  const states = await readFiles(exec, [...wanted.map(w => hostPath(host, w.path)), ...caTargets, ...(proxy != null ? [caPath] : [])], options)
  const ca = proxy != null ? states.get(caPath)?.content : undefined
  const caFiles = caTargets.map(path => states.get(path) ?? { path, exists: false })
    .filter(before => ca == null || before.content == null || !before.content.equals(ca) || before.mode !== 0o644)
  const files: FileChange[] = []
  for (const w of wanted) {
    const path = hostPath(host, w.path)
    const before = states.get(path) ?? { path, exists: false }
    const after = w.content(before)
    // a file the rollout only merges into keeps its mode
    const mode = w.role === 'docker' && before.mode != null ? before.mode : w.mode
    if (!before.exists || before.content == null || !before.content.equals(Buffer.from(after)) || before.mode !== mode) {
      files.push({ path, role: w.role, before, after, mode })
    }
  }
  const releases = hostPath(host, PATHS.releases)
  // tagged lines: a fresh host has no `current`, and readlink then prints nothing at all
  const probe = await runChecked(exec, `if l=$(readlink ${sh(hostPath(host, PATHS.current))}); then echo "link $l"; else echo none; fi; if [ -f ${sh(`${releases}/${bundle.release}/VERSION`)} ]; then echo present; else echo absent; fi`, 'reading the installed release', options)
  const [head = '', presence] = probe.split('\n')
  const link = head.startsWith('link ') ? head.slice(5) : ''
  const currentRelease = link === '' ? null : releaseOf(link, releases)
  const running = await isRunning(exec, host, manager, options)
  const newDirs = await missingDirs(exec, host, [...wanted.map(w => hostPath(host, w.path)), ...caFiles.map(f => f.path), `${releases}/${bundle.release}`, hostPath(host, PATHS.current)], options)
  const releaseChange = currentRelease !== bundle.release
  const restart = releaseChange || !running || files.some(f => !RUNTIME_ROLES.includes(f.role))
  return {
    host,
    manager,
    release: bundle.release,
    releasePresent: presence === 'present',
    currentRelease,
    files,
    newDirs,
    caFiles,
    ...(ca != null ? { ca } : {}),
    ...(proxy != null ? { proxy } : {}),
    running,
    restart,
    changed: releaseChange || restart || files.length > 0 || caFiles.length > 0
  }
}

/** The directories above `paths` (below the host's root) that do not exist yet. */
async function missingDirs (exec: Executor, host: Host, paths: string[], options: { signal?: AbortSignal }): Promise<string[]> {
  const dirs = new Set<string>()
  for (let p of paths) {
    // bounded: each step shortens the path
    while ((p = dirname(p)).length > host.root.length && p !== '/') {
      dirs.add(p)
    }
  }
  const list = [...dirs]
  if (list.length === 0) {
    return []
  }
  const out = await runChecked(exec, list.map(d => `[ -d ${sh(d)} ] && echo y || echo n`).join('\n'), 'reading directories', options)
  const answers = out.split('\n')
  return list.filter((_, i) => answers[i] === 'n')
}

/** The release a `current` link names: the directory under releases/ (relative or absolute link), else the target as it is. */
function releaseOf (link: string, releases: string): string {
  for (const prefix of ['releases/', `${releases}/`, `${PATHS.releases}/`]) {
    const rest = link.startsWith(prefix) ? link.slice(prefix.length).replace(/\/+$/, '') : ''
    if (rest !== '' && !rest.includes('/')) {
      return rest
    }
  }
  return link
}

/** Config text with every `password:` value hidden, for printing. */
function redact (text: string): string {
  // a block scalar (`password: |-`) goes on over the more indented lines below it: those go too
  return text.replace(/^(( *)(?:- )?["']?password["']?\s*:\s*)\S.*$(\n\2 +\S.*$)*/gim, '$1(hidden)')
}

/** The plan as text: what would change, with a unified diff of each file (never a key's content). */
export function describePlan (plan: HostPlan): string {
  const envNote = dockerEnvNote(plan)
  if (!plan.changed) {
    return `${plan.host.name}: up to date, nothing to change\n${envNote != null ? `  ${envNote}\n` : ''}`
  }
  const lines = [`${plan.host.name}: plan`]
  if (plan.currentRelease !== plan.release) {
    lines.push(`  release: ${plan.currentRelease ?? 'none'} -> ${plan.release}${plan.releasePresent ? ' (already unpacked)' : ' (upload and unpack)'}`)
  }
  for (const f of plan.files) {
    const modeNote = f.before.exists && f.before.mode !== f.mode ? ` (mode ${f.before.mode?.toString(8) ?? '?'} -> ${f.mode.toString(8)})` : f.before.exists ? '' : ` (new, mode ${f.mode.toString(8)})`
    lines.push(`  file ${f.path}${modeNote}`)
    if (f.role === 'key') {
      lines.push(`    ${f.before.exists ? 'the cluster key changes' : 'the cluster key is written'} (content not shown)`)
      continue
    }
    const text = (t: string): string => f.role === 'config' ? redact(t) : t
    const patch = createTwoFilesPatch(f.path, f.path, text(f.before.content?.toString('utf8') ?? ''), text(f.after.toString()), f.before.exists ? 'current' : '(none)', 'desired')
    lines.push(...patch.trimEnd().split('\n').map(l => `    ${l}`))
  }
  if (plan.files.some(f => f.role === 'docker')) {
    lines.push('  reload dockerd (SIGHUP), if it runs')
  }
  if (plan.files.some(f => f.role === 'docker-env')) {
    lines.push('  restart dockerd (systemd: its environment changed; a reload does not take it), if it runs')
  }
  if (plan.restart) {
    lines.push(`  ${plan.running ? 'restart' : 'start'} the daemon (${plan.manager})`)
  }
  const caPath = proxyCaPath(plan.host)
  for (const f of plan.caFiles) {
    lines.push(`  file ${f.path}${f.exists ? '' : ' (new, mode 644)'}: the daemon's proxy CA ${caPath}${plan.ca == null ? ', installed once the daemon has started and generated it' : ''}`)
    if (plan.ca != null) {
      const patch = createTwoFilesPatch(f.path, f.path, f.content?.toString('utf8') ?? '', plan.ca.toString('utf8'), f.exists ? 'current' : '(none)', 'desired')
      lines.push(...patch.trimEnd().split('\n').map(l => `    ${l}`))
    }
  }
  if (envNote != null) {
    lines.push(`  ${envNote}`)
  }
  return `${lines.join('\n')}\n`
}

/** Where the rollout cannot give dockerd the proxy itself (no systemd), what whoever starts dockerd must. */
function dockerEnvNote (plan: HostPlan): string | undefined {
  return plan.proxy != null && plan.manager !== 'systemd'
    ? `dockerd's environment: no systemd here, so whoever starts dockerd must give it ${dockerProxyEnvironment(plan.proxy)}`
    : undefined
}

export interface HostOutcome {
  state: 'unchanged' | 'changed' | 'failed'
  notes: string[]
  error?: string
  /** After a failure: whether the host was put back as it was. */
  rolledBack?: boolean
  pull?: PullSummary
}

async function installRelease (exec: Executor, host: Host, bundle: Bundle, signal?: AbortSignal): Promise<void> {
  const releases = hostPath(host, PATHS.releases)
  const tmp = `${releases}/.${bundle.release}.tmp`
  const dir = `${releases}/${bundle.release}`
  // streamed over the connection and unpacked as it arrives: never whole in memory
  await runChecked(exec, `set -e; rm -rf ${sh(tmp)}; mkdir -p ${sh(tmp)}; tar -xzf - -C ${sh(tmp)} --strip-components=1 --no-same-owner; [ -x ${sh(`${tmp}/bin/dfget`)} ] || { echo 'not a Shoal bundle: no bin/dfget' >&2; exit 1; }; rm -rf ${sh(dir)}; mv ${sh(tmp)} ${sh(dir)}`,
    `unpacking release ${bundle.release}`, { input: createReadStream(bundle.path), ...(signal != null ? { signal } : {}) })
}

async function pointCurrent (exec: Executor, host: Host, release: string | null, signal?: AbortSignal): Promise<void> {
  const current = sh(hostPath(host, PATHS.current))
  const script = release == null
    ? `rm -f ${current}`
    : `mkdir -p ${sh(hostPath(host, '/opt/shoal'))} && ln -sfn ${sh(release.includes('/') ? release : `releases/${release}`)} ${current}.dfctl-tmp && mv -Tf ${current}.dfctl-tmp ${current}`
  await runChecked(exec, script, 'switching the current release', signal != null ? { signal } : {})
}

/** Copies of every file about to be replaced, under /var/lib/shoal/backups/<time>/ on the host. */
async function backup (exec: Executor, plan: HostPlan, signal?: AbortSignal): Promise<string> {
  const dir = hostPath(plan.host, `${PATHS.backups}/${new Date().toISOString().replace(/[:.]/g, '-')}`)
  for (const before of [...plan.files.map(f => f.before), ...plan.caFiles]) {
    if (before.exists && before.content != null) {
      // 0600 whatever the original's mode: the config may hold passwords, the key is secret
      await writeFile(exec, `${dir}${before.path.slice(plan.host.root.length)}`, before.content, 0o600, signal != null ? { signal } : {})
    }
  }
  await writeFile(exec, `${dir}/current-release`, `${plan.currentRelease ?? ''}\n`, 0o600, signal != null ? { signal } : {})
  return dir
}

/**
 * Applies a plan, then gates the host (/healthz, then a test pull through the mirror).
 * Any failure after the first change puts back every file as it was (content and
 * mode, or no file), the release it ran, and the daemon as it was (running or not).
 */
export async function applyHost (exec: Executor, inventory: Inventory, plan: HostPlan, bundle: Bundle, options: { signal?: AbortSignal } = {}): Promise<HostOutcome> {
  const { host, signal } = { host: plan.host, signal: options.signal }
  const so = signal != null ? { signal } : {}
  if (!plan.changed) {
    return { state: 'unchanged', notes: ['up to date'] }
  }
  const notes: string[] = []
  let touched = false
  try {
    const dir = await backup(exec, plan, signal)
    notes.push(`backup in ${dir}`)
    touched = true
    if (!plan.releasePresent) {
      await installRelease(exec, host, bundle, signal)
      notes.push(`installed ${plan.release}`)
    }
    for (const f of plan.files) {
      await writeFile(exec, f.path, f.after, f.mode, so)
    }
    if (plan.files.length > 0) {
      notes.push(`wrote ${plan.files.map(f => f.path).join(', ')}`)
    }
    if (plan.currentRelease !== plan.release) {
      await pointCurrent(exec, host, plan.release, signal)
    }
    if (plan.files.some(f => f.role === 'docker') && await reloadDockerd(exec, host, so)) {
      notes.push('reloaded dockerd')
    }
    if (plan.files.some(f => f.role === 'docker-env') && await restartDockerdUnit(exec, so)) {
      notes.push('restarted dockerd with the proxy in its environment')
    }
    if (plan.restart) {
      await startDaemon(exec, host, plan.manager, { restart: plan.running, ...so })
      notes.push(`${plan.running ? 'restarted' : 'started'} the daemon (${plan.manager})`)
    }
    const timeout = inventory.gate.timeout ?? DEFAULT_GATE_TIMEOUT
    const url = localDaemonUrl(host)
    await waitHealthy(exec, url, { timeout, ...so })
    if (plan.caFiles.length > 0) {
      await installProxyCa(exec, plan, so)
      notes.push(`installed the proxy CA as ${plan.caFiles.map(f => f.path).join(', ')}`)
    }
    const envNote = dockerEnvNote(plan)
    if (envNote != null) {
      notes.push(envNote)
    }
    let pull: PullSummary | undefined
    if (inventory.gate.image != null) {
      pull = await testPull(exec, url, inventory.gate.image, { timeout, ...so })
      notes.push(`gate: healthy, pulled ${pull.image} through the mirror (${pull.blobs} blobs, ${pull.bytes} bytes, digests checked)`)
    } else {
      notes.push('gate: healthy (no gate.image in the inventory: no test pull)')
    }
    return { state: 'changed', notes, ...(pull != null ? { pull } : {}) }
  } catch (err) {
    const error = (err as Error).message
    if (!touched) {
      return { state: 'failed', notes, error, rolledBack: true }
    }
    try {
      // its own deadline, not the caller's signal: that may be what aborted (Ctrl-C, the gate's
      // deadline), and an interrupted host must still be put back
      await rollbackHost(exec, plan, { signal: AbortSignal.timeout(ROLLBACK_TIMEOUT) })
      notes.push('rolled back')
      return { state: 'failed', notes, error, rolledBack: true }
    } catch (rollbackErr) {
      return { state: 'failed', notes, error: `${error}; the rollback failed too: ${(rollbackErr as Error).message}`, rolledBack: false }
    }
  }
}

/** Copies the CA the running daemon generated to dockerd's certs.d files. */
async function installProxyCa (exec: Executor, plan: HostPlan, options: { signal?: AbortSignal }): Promise<void> {
  const caPath = proxyCaPath(plan.host)
  const ca = (await readFiles(exec, [caPath], options)).get(caPath)?.content
  if (ca == null || !ca.toString('utf8').includes('BEGIN CERTIFICATE')) {
    throw new HostCommandError(`${plan.host.name}: the daemon runs with proxyListen but has no proxy CA certificate at ${caPath}`)
  }
  for (const f of plan.caFiles) {
    await writeFile(exec, f.path, ca, 0o644, options)
  }
}

/** Puts the host back as the plan found it. */
async function rollbackHost (exec: Executor, plan: HostPlan, options: { signal?: AbortSignal }): Promise<void> {
  const { host } = plan
  await stopDaemon(exec, host, plan.manager, options)
  for (const before of [...plan.files.map(f => f.before), ...plan.caFiles]) {
    await restoreFile(exec, before, options)
  }
  if (plan.currentRelease !== plan.release) {
    await pointCurrent(exec, host, plan.currentRelease, options.signal)
    if (!plan.releasePresent) {
      await runChecked(exec, `rm -rf ${sh(hostPath(host, `${PATHS.releases}/${plan.release}`))}`, 'removing the new release', options)
    }
  }
  if (plan.files.some(f => f.role === 'docker')) {
    await reloadDockerd(exec, host, options)
  }
  if (plan.files.some(f => f.role === 'docker-env')) {
    await restartDockerdUnit(exec, options)
  }
  // the directories it created, deepest first, where nothing else was put in them
  const dirs = [...(plan.newDirs ?? [])].sort((a, b) => b.length - a.length)
  if (dirs.length > 0) {
    await runChecked(exec, dirs.map(d => `rmdir ${sh(d)} 2>/dev/null || true`).join('\n'), 'removing the directories it created', options)
  }
  if (plan.running) {
    await startDaemon(exec, host, plan.manager, { restart: false, ...options })
  } else if (plan.manager === 'systemd') {
    await runChecked(exec, 'systemctl daemon-reload', 'reloading systemd', options)
  }
}
