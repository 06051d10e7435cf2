import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { run, startProcess, type ManagedProcess } from './processes.ts'
import { which } from './require-binary.ts'

export interface Containerd {
  socket: string
  proc: ManagedProcess
  /** Where `hosts.toml` files go: `<hostsDir>/<registry host[:port]>/hosts.toml` */
  hostsDir: string
  /**
   * Points pulls of `registry` (`host:port`, as image references name it) at `mirror`
   * (the Shoal daemon's URL) for pull and resolve, with `server` as the fallback.
   */
  addMirror(registry: string, server: string, mirror: string): Promise<void>
  /** `ctr images pull --hosts-dir … --platform … ref` into the native snapshotter; resolves with ctr's output. */
  pull(ref: string, platform?: string): Promise<string>
  /** `ctr` with this containerd's socket. */
  ctr(args: string[]): Promise<string>
  stop(): Promise<void>
}

/**
 * A real containerd (Debian's) with a root, state, sockets and config of its own, so it
 * never meets the host's containerd; pulls with `ctr` through `--hosts-dir`.
 */
export async function startContainerd (dir: string): Promise<Containerd> {
  const containerdBin = which('containerd')
  const ctrBin = which('ctr')
  if (containerdBin == null || ctrBin == null) {
    throw new Error('containerd is not installed (apt-get install containerd)')
  }
  await mkdir(dir, { recursive: true })
  // unix socket paths must stay short (108 bytes)
  const run_ = `/tmp/shoal-ctd-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  await mkdir(run_, { recursive: true })
  const socket = join(run_, 'c.sock')
  const hostsDir = join(dir, 'certs.d')
  await mkdir(hostsDir, { recursive: true })
  const config = join(dir, 'config.toml')
  await writeFile(config, [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(run_, 'state')}"`,
    // no CRI (it wants a CNI setup), no snapshotters this test host cannot have
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[debug]',
    `  address = "${join(run_, 'debug.sock')}"`,
    ''
  ].join('\n'))
  const { proc } = await startProcess({
    command: containerdBin,
    args: ['--config', config],
    logFile: join(dir, 'containerd.log'),
    ready: (line) => line.includes('containerd successfully booted') ? true : undefined,
    readyTimeoutMs: 30_000
  })
  const ctr = async (args: string[]): Promise<string> => {
    const res = await run(ctrBin, ['--address', socket, ...args], { timeoutMs: 180_000 })
    if (res.code !== 0) {
      throw new Error(`ctr ${args.join(' ')} failed (${res.code}): ${res.stderr || res.stdout}`)
    }
    return `${res.stdout}${res.stderr}`
  }
  return {
    socket,
    proc,
    hostsDir,
    async addMirror (registry, server, mirror) {
      await mkdir(join(hostsDir, registry), { recursive: true })
      await writeFile(join(hostsDir, registry, 'hosts.toml'), [
        `server = "${server}"`,
        '',
        `[host."${mirror}"]`,
        '  capabilities = ["pull", "resolve"]',
        ''
      ].join('\n'))
    },
    pull: async (ref, platform = 'linux/amd64') => ctr(['--debug', 'images', 'pull', '--hosts-dir', hostsDir, '--snapshotter', 'native', '--platform', platform, ref]),
    ctr,
    async stop () {
      await proc.stop(10_000)
      await rm(run_, { recursive: true, force: true })
    }
  }
}
