import { rmSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { writeClusterKeyFile } from '../../packages/core/src/p2p/cluster-key.ts'
import { BINARIES, jsonLine, startProcess, type ManagedProcess } from './processes.ts'

export interface SupernodeHandle {
  url: string
  peerId: string
  proc: ManagedProcess
}

export interface DaemonHandle {
  url: string
  peerId: string
  /** The HTTP(S) proxy's URL, when started with --proxy-listen */
  proxy?: string
  name: string
  proc: ManagedProcess
}

function readyLine (msg: string) {
  return (line: string): { url: string, peerId: string, proxy?: string } | undefined => {
    const json = jsonLine(line)
    return json?.msg === msg ? { url: String(json.url), peerId: String(json.peerId), ...(typeof json.proxy === 'string' ? { proxy: json.proxy } : {}) } : undefined
  }
}

let sharedKey: Promise<string> | undefined

/**
 * The cluster key file the processes a test starts share unless told otherwise: one
 * per test process, removed when it exits.
 */
export async function testClusterKey (): Promise<string> {
  sharedKey ??= (async () => {
    const path = join(tmpdir(), `shoal-test-cluster-${process.pid}.key`)
    rmSync(path, { force: true })
    await writeClusterKeyFile(path)
    process.once('exit', () => { rmSync(path, { force: true }) })
    return path
  })()
  return sharedKey
}

/** Wraps a command line, such as `ip netns exec <ns>` to run it on a test host. */
export type ExecWrapper = (command: string, args: string[]) => { command: string, args: string[] }

const direct: ExecWrapper = (command, args) => ({ command, args })

export interface SupernodeOptions {
  dir: string
  /** The registries (origins) the supernode may fetch from: its --allow-source */
  allowSource: string[]
  pieceSize?: number
  extraArgs?: string[]
  /** HTTP address (metrics, status). @default 127.0.0.1:0 */
  listen?: string
  /** Cluster key file. @default {@link testClusterKey} */
  clusterKey?: string
  /** libp2p address. @default /ip4/127.0.0.1/tcp/0 */
  p2pListen?: string
  exec?: ExecWrapper
  /** Flags for node itself, such as --cpu-prof */
  nodeArgs?: string[]
  /** Environment besides the test's own, such as NODE_EXTRA_CA_CERTS */
  env?: NodeJS.ProcessEnv
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
      '--cluster-key', options.clusterKey ?? await testClusterKey(),
      ...options.allowSource.flatMap(origin => ['--allow-source', origin]),
      ...(options.pieceSize != null ? ['--piece-size', String(options.pieceSize)] : []),
      ...(options.extraArgs ?? [])
    ]),
    ...(options.env != null ? { env: options.env } : {}),
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
  /** The supernode's HTTP address or libp2p multiaddr (or several); null for none */
  supernode: string | string[] | null
  /** Cluster key file. @default {@link testClusterKey} */
  clusterKey?: string
  extraArgs?: string[]
  /** Registry mirror address. @default 127.0.0.1:0 */
  listen?: string
  /** libp2p address. @default /ip4/127.0.0.1/tcp/0 */
  p2pListen?: string
  exec?: ExecWrapper
  /** Flags for node itself, such as --cpu-prof */
  nodeArgs?: string[]
  /** Environment besides the test's own, such as NODE_EXTRA_CA_CERTS */
  env?: NodeJS.ProcessEnv
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
      '--supernode', ...[options.supernode ?? 'none'].flat(),
      '--data-dir', join(dir, 'data'),
      '--cluster-key', options.clusterKey ?? await testClusterKey(),
      '--hostname', options.name,
      ...(options.extraArgs ?? [])
    ]),
    ...(options.env != null ? { env: options.env } : {}),
    logFile: join(dir, 'daemon.log'),
    ready: readyLine('daemon ready')
  })
  const { url, peerId, proxy } = ready as { url: string, peerId: string, proxy?: string }
  return { url, peerId, ...(proxy != null ? { proxy } : {}), name: options.name, proc }
}
