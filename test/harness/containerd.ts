import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { run, startProcess, type ManagedProcess } from './processes.ts'
import { which } from './require-binary.ts'

export interface Containerd {
  socket: string
  proc: ManagedProcess
  /**
   * `ctr images pull` with the registry hosts configured in `hostsDir`; rejects on
   * failure with ctr's output. With `debug`, ctr logs every request it sends (on
   * stderr, handed back after stdout).
   */
  pull(ref: string, hostsDir: string, options?: { debug?: boolean }): Promise<string>
  /** Digests in the content store (`ctr content ls`). */
  contentDigests(): Promise<string[]>
  /** The target digest of an image it holds (`ctr images ls`). */
  imageTarget(ref: string): Promise<string | undefined>
  stop(): Promise<void>
}

/** Namespace the test's images go into, so nothing mixes with the host's. */
const NAMESPACE = 'shoal-test'

/**
 * A real containerd (Debian's) with a root, state, sockets and config.toml of its own,
 * so it runs beside any other; the CRI plugin off, the native snapshotter for unpacking.
 */
export async function startContainerd (dir: string): Promise<Containerd> {
  const binary = which('containerd')
  const ctr = which('ctr')
  if (binary == null || ctr == null) {
    throw new Error('containerd is not installed')
  }
  await mkdir(dir, { recursive: true })
  // unix socket paths must stay under 108 bytes: a short directory of its own in /tmp
  const runDir = `/tmp/shoal-cd-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  await mkdir(runDir, { recursive: true })
  const socket = join(runDir, 'containerd.sock')
  const config = join(dir, 'config.toml')
  await writeFile(config, [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(runDir, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[debug]',
    '  level = "info"',
    ''
  ].join('\n'))
  const { proc } = await startProcess({
    command: binary,
    args: ['--config', config],
    logFile: join(dir, 'containerd.log'),
    ready: (line) => line.includes('containerd successfully booted') ? true : undefined,
    readyTimeoutMs: 60_000
  })
  const ctrRun = async (args: string[], global: string[] = []): Promise<string> => {
    const res = await run(ctr, [...global, '--address', socket, '--namespace', NAMESPACE, ...args], { timeoutMs: 180_000 })
    if (res.code !== 0) {
      throw new Error(`ctr ${args.join(' ')} failed (${res.code}): ${res.stderr || res.stdout}`)
    }
    return global.includes('--debug') ? `${res.stdout}${res.stderr}` : res.stdout
  }
  return {
    socket,
    proc,
    pull: async (ref, hostsDir, options = {}) => ctrRun(['images', 'pull', '--snapshotter', 'native', '--hosts-dir', hostsDir, ref], options.debug === true ? ['--debug'] : []),
    contentDigests: async () => (await ctrRun(['content', 'ls', '--quiet'])).split('\n').map(l => l.trim()).filter(l => l !== ''),
    imageTarget: async (ref) => {
      const line = (await ctrRun(['images', 'ls'])).split('\n').find(l => l.split(/\s+/)[0] === ref)
      return line?.split(/\s+/).find(w => w.startsWith('sha256:'))
    },
    async stop () {
      await proc.stop(15_000)
      await rm(runDir, { recursive: true, force: true })
    }
  }
}

/**
 * Writes containerd's hosts.toml for `registry` (as image references name it) in
 * `hostsDir`: pulls go to `mirror` (plain HTTP), which containerd asks with `?ns=<registry>`.
 */
export async function writeHostsToml (hostsDir: string, registry: string, mirror: string): Promise<void> {
  const dir = join(hostsDir, registry)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'hosts.toml'), [
    `server = "https://${registry}"`,
    '',
    `[host."${mirror}"]`,
    '  capabilities = ["pull", "resolve"]',
    ''
  ].join('\n'))
}
