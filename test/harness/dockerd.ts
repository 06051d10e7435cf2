import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { run, startProcess, type ManagedProcess } from './processes.ts'
import { which } from './require-binary.ts'

export interface Dockerd {
  socket: string
  proc: ManagedProcess
  /** `docker pull ref`; resolves with the CLI's output, rejects on failure. */
  pull(ref: string): Promise<string>
  /** `docker login server` with the password on stdin; the credentials stay in this dockerd's own client config. */
  login(server: string, user: string, password: string): Promise<string>
  /** `docker image inspect --format {{.Id}}` */
  imageId(ref: string): Promise<string>
  stop(): Promise<void>
}

export interface DockerdOptions {
  /** Environment for dockerd besides the test's own, such as HTTPS_PROXY and SSL_CERT_FILE. */
  env?: NodeJS.ProcessEnv
}

/**
 * A real dockerd (Debian's docker.io) that can pull but run nothing: vfs storage, no
 * iptables, no bridge, and every path of its own, so several run side by side. With
 * `mirror` null it has no registry mirror (it pulls straight, or through its proxy).
 */
export async function startDockerd (dir: string, mirror: string | null, options: DockerdOptions = {}): Promise<Dockerd> {
  const dockerdBin = which('dockerd')
  if (dockerdBin == null) {
    throw new Error('dockerd is not installed')
  }
  // the client Debian ships with this dockerd, not whatever else is first on PATH
  const dockerBin = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : which('docker')
  if (dockerBin == null) {
    throw new Error('the docker client is not installed')
  }
  await mkdir(dir, { recursive: true })
  // the exec root holds containerd's socket path, which must stay short
  const execRoot = `/tmp/shoal-dx-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const socket = join(dir, 'docker.sock')
  const { proc } = await startProcess({
    command: dockerdBin,
    args: [
      '--storage-driver', 'vfs',
      '--iptables=false',
      '--ip-masq=false',
      '--bridge=none',
      '--data-root', join(dir, 'data'),
      '--exec-root', execRoot,
      '--pidfile', join(dir, 'docker.pid'),
      '-H', `unix://${socket}`,
      ...(mirror != null ? ['--registry-mirror', mirror] : [])
    ],
    ...(options.env != null ? { env: options.env } : {}),
    logFile: join(dir, 'dockerd.log'),
    ready: (line) => line.includes('API listen on') ? true : undefined,
    readyTimeoutMs: 60_000
  })
  // the CLI's config (and credentials) of this dockerd only, never the user's ~/.docker
  const env = { DOCKER_CONFIG: join(dir, 'docker-config') }
  const docker = async (args: string[], input?: string): Promise<string> => {
    const res = await run(dockerBin, ['-H', `unix://${socket}`, ...args], { timeoutMs: 180_000, env, ...(input != null ? { input } : {}) })
    if (res.code !== 0) {
      throw new Error(`docker ${args.join(' ')} failed (${res.code}): ${res.stderr || res.stdout}`)
    }
    return res.stdout
  }
  return {
    socket,
    proc,
    pull: async (ref) => docker(['pull', ref]),
    login: async (server, user, password) => docker(['login', '--username', user, '--password-stdin', server], password),
    imageId: async (ref) => (await docker(['image', 'inspect', '--format', '{{.Id}}', ref])).trim(),
    async stop () {
      await proc.stop(15_000)
      await rm(execRoot, { recursive: true, force: true })
    }
  }
}
