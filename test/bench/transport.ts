/**
 * The transport floor: what moving bytes over libp2p (the cluster key's private
 * network, TCP, Noise, yamux) costs by itself, with no disk, no hashing and no
 * scheduling. One process sends a GiB of frames on one stream to another on loopback,
 * both built exactly as Shoal's nodes are (createP2PNode, FramedStream); each reports
 * its CPU seconds per GiB. The same transfer then runs without the cluster key, so the
 * key's own cost is measured in the same run.
 *
 *   ./dev bench transport [--size-mib 1024] [--frame-kib 256]
 *
 * The data-path benchmark's peer-to-peer CPU can be no lower than sender + receiver here.
 */
// the node flags the Shoal binaries run with (see packages/core/src/runtime/node-flags.ts)
import '../../packages/core/dist/runtime/apply-node-flags.js'
import { fork } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from '../harness/processes.ts'
import type { Multiaddr } from '@multiformats/multiaddr'

const CORE = `${REPO_ROOT}packages/core/dist/index.js`
const PROTOCOL = '/shoal-bench/transport/1.0.0'
const MiB = 1024 * 1024

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'size-mib': { type: 'string', default: '1024' },
    'frame-kib': { type: 'string', default: '256' },
    help: { type: 'boolean', short: 'h', default: false }
  }
})

/** What this benchmark uses of a libp2p node. */
interface P2PNode {
  handle: (protocol: string, handler: (stream: unknown) => Promise<void>) => Promise<void>
  dialProtocol: (address: Multiaddr, protocol: string, options: { signal: AbortSignal }) => Promise<{ close: () => Promise<void> }>
  getMultiaddrs: () => Multiaddr[]
  stop: () => Promise<void>
}

interface CoreModule {
  createP2PNode: (init: { listen: string[], privateKey: unknown, clusterKey: Uint8Array | null }) => Promise<P2PNode>
  generateClusterKey: () => string
  parseClusterKey: (text: string) => Uint8Array
  loadOrCreatePrivateKey: (path: string) => Promise<unknown>
  FramedStream: new (stream: unknown, init: { maxFrameLength: number }) => {
    readFrame: () => Promise<{ byteLength: number } | null>
    writeFrame: (data: Uint8Array) => Promise<void>
  }
}

const cpuSeconds = (): number => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** A node as Shoal builds it; `key` is the cluster key file's text, or 'none' for an open node. */
async function node (core: CoreModule, dir: string, key: string): Promise<P2PNode> {
  const clusterKey = key === 'none' ? null : core.parseClusterKey(Buffer.from(key, 'base64url').toString())
  return core.createP2PNode({ listen: ['/ip4/127.0.0.1/tcp/0'], privateKey: await core.loadOrCreatePrivateKey(join(dir, 'peer.key')), clusterKey })
}

if (positionals[0] === 'send') {
  // the sending side, forked by the receiver: argv = send <multiaddr> <bytes> <frame> <key|none>
  const core = await import(CORE) as CoreModule
  const { multiaddr } = await import('@multiformats/multiaddr')
  const dir = await mkdtemp(join(tmpdir(), 'shoal-transport-'))
  const [, target, total, frameSize, key] = positionals as [string, string, string, string, string]
  const sender = await node(core, dir, key)
  const stream = await sender.dialProtocol(multiaddr(target), PROTOCOL, { signal: AbortSignal.timeout(10_000) })
  const framed = new core.FramedStream(stream, { maxFrameLength: 4 * MiB })
  const started = cpuSeconds()
  // bounded by the byte count; a fresh buffer per frame, as the piece server sends them
  for (let sent = 0; sent < Number(total); sent += Number(frameSize)) {
    await framed.writeFrame(Buffer.alloc(Number(frameSize), sent & 0xff))
  }
  await stream.close()
  process.send?.({ cpu: cpuSeconds() - started })
  await sender.stop()
  await rm(dir, { recursive: true, force: true })
} else {
  if (values.help) {
    process.stdout.write('usage: ./dev bench transport [--size-mib 1024] [--frame-kib 256]\n')
    process.exit(0)
  }
  const size = Number(values['size-mib']) * MiB
  const frame = Number(values['frame-kib']) * 1024
  if (!(size >= MiB && size <= 8192 * MiB) || !(frame >= 1024 && frame <= 4 * MiB)) {
    process.stderr.write('transport: --size-mib must be 1..8192, --frame-kib 1..4096\n')
    process.exit(2)
  }
  const core = await import(CORE) as CoreModule
  /** One transfer; `key` as {@link node} takes it. */
  const measure = async (label: string, key: string): Promise<void> => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-transport-'))
    const receiver = await node(core, dir, key)
    const received = Promise.withResolvers<{ cpu: number, seconds: number, bytes: number }>()
    await receiver.handle(PROTOCOL, async (stream) => {
      const framed = new core.FramedStream(stream, { maxFrameLength: 4 * MiB })
      const cpu = cpuSeconds()
      const t0 = performance.now()
      let bytes = 0
      for (let f = await framed.readFrame(); f != null; f = await framed.readFrame()) {
        bytes += f.byteLength
      }
      received.resolve({ cpu: cpuSeconds() - cpu, seconds: (performance.now() - t0) / 1000, bytes })
    })
    const child = fork(new URL(import.meta.url).pathname, ['send', receiver.getMultiaddrs()[0]!.toString(), String(size), String(frame), key], { execArgv: process.execArgv })
    const sent = new Promise<{ cpu: number }>((resolve, reject) => {
      child.once('message', (m) => { resolve(m as { cpu: number }) })
      child.once('exit', (code) => { reject(new Error(`sender exited ${code}`)) })
    })
    const timeout = setTimeout(() => { child.kill('SIGKILL'); received.reject(new Error('timed out')) }, 300_000)
    try {
      const [r, s] = await Promise.all([received.promise, sent])
      const gib = r.bytes / 2 ** 30
      process.stdout.write(`${label}: ${(r.bytes / MiB).toFixed(0)} MiB in ${Number(values['frame-kib'])} KiB frames: ${(r.bytes / 1e6 / r.seconds).toFixed(0)} MB/s; ` +
        `CPU-s/GiB sender ${(s.cpu / gib).toFixed(2)}, receiver ${(r.cpu / gib).toFixed(2)}, both ${((s.cpu + r.cpu) / gib).toFixed(2)}\n`)
    } finally {
      clearTimeout(timeout)
      child.kill()
      await receiver.stop()
      await rm(dir, { recursive: true, force: true })
    }
  }
  await measure('with the cluster key (as Shoal runs)', Buffer.from(core.generateClusterKey()).toString('base64url'))
  await measure('without a cluster key', 'none')
}
