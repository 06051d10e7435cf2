import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { freePort } from './registry.ts'
import { run, startProcess, type ManagedProcess } from './processes.ts'
import { which } from './require-binary.ts'

export interface SshHost {
  name: string
  port: number
  /** known_hosts line(s) for this host, for StrictHostKeyChecking=yes */
  knownHosts: string
  proc: ManagedProcess
  stop(): Promise<void>
}

/** An ed25519 key pair made with ssh-keygen; returns the private key path. */
export async function sshKeygen (path: string): Promise<string> {
  const res = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'shoal-test', '-f', path])
  if (res.code !== 0) {
    throw new Error(`ssh-keygen failed: ${res.stderr}`)
  }
  return path
}

/**
 * A real sshd (Debian's openssh-server) on a loopback port of its own, with its own
 * host key, accepting only `authorizedKey` (public key file). It runs as the test's
 * user; it never reads /etc/ssh.
 */
export async function startSshd (dir: string, name: string, authorizedKey: string): Promise<SshHost> {
  const sshd = which('sshd')
  if (sshd == null) {
    throw new Error('sshd is not installed (apt-get install openssh-server)')
  }
  const home = join(dir, `sshd-${name}`)
  await mkdir(home, { recursive: true })
  // privilege separation directory sshd insists on
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 })
  const hostKey = await sshKeygen(join(home, 'host_key'))
  const port = await freePort()
  const config = join(home, 'sshd_config')
  await writeFile(config, [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${hostKey}`,
    `PidFile ${join(home, 'sshd.pid')}`,
    `AuthorizedKeysFile ${authorizedKey}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    'UsePAM no',
    'StrictModes no',
    'MaxStartups 50',
    'MaxSessions 50',
    ''
  ].join('\n'))
  const { proc } = await startProcess({
    command: sshd,
    args: ['-D', '-e', '-f', config],
    logFile: join(home, 'sshd.log'),
    ready: (line) => line.includes('Server listening on') ? true : undefined
  })
  const pub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(' ').slice(0, 2).join(' ')
  return { name, port, knownHosts: `[127.0.0.1]:${port} ${pub}\n`, proc, stop: async () => { await proc.stop(3_000) } }
}
