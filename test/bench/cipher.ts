/**
 * What the cluster key's cipher costs per GiB, by buffer size: OpenSSL ChaCha20 called
 * once per buffer, against Shoal's KeyStream (key stream made ahead, XORed in JS for
 * small buffers). Socket reads on a shaped link are a kilobyte or two; on loopback they
 * are tens of kilobytes. One process, no network.
 *
 *   ./dev bench cipher [--mib 256]
 */
import { createCipheriv, randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { REPO_ROOT } from '../harness/processes.ts'

const { values } = parseArgs({ options: { mib: { type: 'string', default: '256' }, help: { type: 'boolean', short: 'h', default: false } } })
if (values.help) {
  process.stdout.write('usage: ./dev bench cipher [--mib 256]   (bytes pushed through each cipher per buffer size)\n')
  process.exit(0)
}
const total = Number(values.mib) * 1024 * 1024
if (!(total >= 1024 * 1024 && total <= 8192 * 1024 * 1024)) {
  process.stderr.write('cipher: --mib must be 1..8192\n')
  process.exit(2)
}

interface KeyStreamModule { KeyStream: new (key: Uint8Array) => { transform: (buf: Uint8Array) => Uint8Array } }
const { KeyStream } = await import(`${REPO_ROOT}packages/core/dist/p2p/cluster-protector.js`) as KeyStreamModule

/** CPU seconds per GiB for pushing `total` bytes through `fn`, `size` bytes at a time. */
function cpuPerGiB (size: number, fn: (buf: Buffer) => void): number {
  const buf = randomBytes(size)
  const before = process.cpuUsage()
  // bounded by total
  for (let n = 0; n < total; n += size) {
    fn(buf)
  }
  const used = process.cpuUsage(before)
  return (used.user + used.system) / 1e6 / (total / 2 ** 30)
}

process.stdout.write(`${values.mib} MiB per run; CPU-s/GiB\nbuffer    native call per buffer   KeyStream\n`)
for (const size of [1448, 4096, 16384, 65536, 262144]) {
  const native = createCipheriv('chacha20', randomBytes(32), Buffer.alloc(16))
  const stream = new KeyStream(randomBytes(32))
  const a = cpuPerGiB(size, (b) => { native.update(b) })
  const b = cpuPerGiB(size, (buf) => { stream.transform(buf) })
  process.stdout.write(`${String(size).padStart(6)}    ${a.toFixed(2).padStart(20)}   ${b.toFixed(2).padStart(9)}\n`)
}
