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

/** Wraps a command line, such as `ip netns exec <ns>` to run it on a test host. */
export type ExecWrapper = (command: string, args: string[]) => { command: string, args: string[] }

const direct: ExecWrapper = (command, args) => ({ command, args })

export interface SupernodeOptions {
  dir: string
  pieceSize?: number
  extraArgs?: string[]
  /** HTTP API address. @default 127.0.0.1:0 */
  listen?: string
  /** libp2p address. @default /ip4/127.0.0.1/tcp/0 */
  p2pListen?: string
  exec?: ExecWrapper
  /** Flags for node itself, such as --cpu-prof */
  nodeArgs?: string[]
}

/** Starts the built `supernode` binary, by default on loopback, on ports the OS picks. */
export async function startSupernode (options: SupernodeOptions): Promise<SupernodeHandle> {
  await mkdir(options.dir, { recursive: true })
  const { proc, ready } = await startProcess({
    ...(options.exec ?? direct)(process.execPath, [
      ...(options.nodeArgs ?? []),
      BINARIES.supernode,
      '--listen', options.listen ?? '127.0.0.1:0',
      '--p2p-listen', options.p2pListen ?? '/ip4/127.0.0.1/tcp/0',
      '--data-dir', join(options.dir, 'data'),
      ...(options.pieceSize != null ? ['--piece-size', String(options.pieceSize)] : []),
      ...(options.extraArgs ?? [])
    ]),
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
  /** Registry mirror address. @default 127.0.0.1:0 */
  listen?: string
  /** libp2p address. @default /ip4/127.0.0.1/tcp/0 */
  p2pListen?: string
  exec?: ExecWrapper
  /** Flags for node itself, such as --cpu-prof */
  nodeArgs?: string[]
}

/** Starts the built `dfget daemon`, by default on loopback, on ports the OS picks. */
export async function startDaemon (options: DaemonOptions): Promise<DaemonHandle> {
  const dir = join(options.dir, options.name)
  await mkdir(dir, { recursive: true })
  const { proc, ready } = await startProcess({
    ...(options.exec ?? direct)(process.execPath, [
      ...(options.nodeArgs ?? []),
      BINARIES.dfget, 'daemon',
      '--listen', options.listen ?? '127.0.0.1:0',
      '--p2p-listen', options.p2pListen ?? '/ip4/127.0.0.1/tcp/0',
      '--registry', options.registry,
      '--supernode', options.supernode ?? 'none',
      '--data-dir', join(dir, 'data'),
      '--hostname', options.name,
      ...(options.extraArgs ?? [])
    ]),
    logFile: join(dir, 'daemon.log'),
    ready: readyLine('daemon ready')
  })
  const { url, peerId } = ready as { url: string, peerId: string }
  return { url, peerId, name: options.name, proc }
}
