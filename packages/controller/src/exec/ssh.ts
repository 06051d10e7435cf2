import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SSH_CONNECT_TIMEOUT, SSH_CONTROL_PERSIST } from '../constants.ts'
import { sh, spawnBounded, type Executor, type RunOptions, type RunResult } from './executor.ts'

export interface SshTarget {
  host: string
  address: string
  user: string
  port: number
  key?: string
  knownHostsFile?: string
}

/**
 * Commands over the system OpenSSH client: BatchMode (never a prompt), a connect
 * timeout, keep-alives, and one master connection per host (ControlMaster) that every
 * command reuses, closed by {@link SshExecutor.close}. The host key must be known
 * (the user's known_hosts, or the inventory's knownHostsFile): nothing is accepted blind.
 */
export class SshExecutor implements Executor {
  readonly host: string
  private readonly target: SshTarget
  private controlDir?: Promise<string>

  constructor (target: SshTarget) {
    this.host = target.host
    this.target = target
  }

  private async options (): Promise<string[]> {
    // a short directory of our own: the socket path has a ~100 byte limit
    this.controlDir ??= mkdtemp(join(tmpdir(), 'dfctl-'))
    const dir = await this.controlDir
    const t = this.target
    return [
      '-o', 'BatchMode=yes',
      '-o', `ConnectTimeout=${SSH_CONNECT_TIMEOUT}`,
      '-o', 'ServerAliveInterval=10',
      '-o', 'ServerAliveCountMax=3',
      '-o', 'ControlMaster=auto',
      '-o', `ControlPath=${join(dir, '%C')}`,
      '-o', `ControlPersist=${SSH_CONTROL_PERSIST}`,
      '-o', 'LogLevel=ERROR',
      // always strict: an unknown or changed host key fails the connection, whatever ssh_config says
      '-o', 'StrictHostKeyChecking=yes',
      ...(t.knownHostsFile != null ? ['-o', `UserKnownHostsFile=${t.knownHostsFile}`] : []),
      ...(t.key != null ? ['-o', 'IdentitiesOnly=yes', '-i', t.key] : []),
      '-p', String(t.port),
      '-l', t.user
    ]
  }

  async run (script: string, options: RunOptions = {}): Promise<RunResult> {
    const result = await spawnBounded('ssh', [...await this.options(), '--', this.target.address, `sh -c ${sh(script)}`], this.host, options)
    if (result.code === 255) {
      // ssh's own failure (connect, auth, host key), not the script's
      result.stderr = `ssh to ${this.target.user}@${this.target.address}:${this.target.port} failed: ${result.stderr.trim()}`
    }
    return result
  }

  async close (): Promise<void> {
    if (this.controlDir == null) {
      return
    }
    const dir = await this.controlDir
    await spawnBounded('ssh', [...await this.options(), '-O', 'exit', '--', this.target.address], this.host, { timeout: 5_000 }).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}
