import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { BINARIES, jsonLine, startProcess, type ManagedProcess } from './processes.ts'

export interface SupernodeHandle {
  url: string
  peerId: string
  proc: ManagedProcess
}

export interface DaemonHandle {
  url: string
  peerId: string
  name: string
  proc: ManagedProcess
}

function readyLine (msg: string) {
  return (line: string): { url: string, peerId: string } | undefined => {
    const json = jsonLine(line)
    return json?.msg === msg ? { url: String(json.url), peerId: String(json.peerId) } : undefined
  }
}

export interface SupernodeOptions {
  dir: string
  pieceSize?: number
  extraArgs?: string[]
}

/** Starts the built `supernode` binary on loopback, on ports the OS picks. */
export async function startSupernode (options: SupernodeOptions): Promise<SupernodeHandle> {
  await mkdir(options.dir, { recursive: true })
  const { proc, ready } = await startProcess({
    command: process.execPath,
    args: [
      BINARIES.supernode,
      '--listen', '127.0.0.1:0',
      '--p2p-listen', '/ip4/127.0.0.1/tcp/0',
      '--data-dir', join(options.dir, 'data'),
      ...(options.pieceSize != null ? ['--piece-size', String(options.pieceSize)] : []),
      ...(options.extraArgs ?? [])
    ],
    logFile: join(options.dir, 'supernode.log'),
    ready: readyLine('supernode ready')
  })
  const { url, peerId } = ready as { url: string, peerId: string }
  return { url, peerId, proc }
}

export interface DaemonOptions {
  dir: string
  name: string
  registry: string
  supernode: string | null
  extraArgs?: string[]
}

/** Starts the built `dfget daemon` on loopback, on ports the OS picks. */
export async function startDaemon (options: DaemonOptions): Promise<DaemonHandle> {
  const dir = join(options.dir, options.name)
  await mkdir(dir, { recursive: true })
  const { proc, ready } = await startProcess({
    command: process.execPath,
    args: [
      BINARIES.dfget, 'daemon',
      '--listen', '127.0.0.1:0',
      '--p2p-listen', '/ip4/127.0.0.1/tcp/0',
      '--registry', options.registry,
      '--supernode', options.supernode ?? 'none',
      '--data-dir', join(dir, 'data'),
      '--hostname', options.name,
      ...(options.extraArgs ?? [])
    ],
    logFile: join(dir, 'daemon.log'),
    ready: readyLine('daemon ready')
  })
  const { url, peerId } = ready as { url: string, peerId: string }
  return { url, peerId, name: options.name, proc }
}
