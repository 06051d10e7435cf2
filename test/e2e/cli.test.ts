/**
 * The three binaries as an operator meets them: --help, bad input, and `dfget <url> -o
 * <file>` against real supernode and daemon processes.
 */
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sha256, startTestOrigin, type TestOrigin } from '../harness/origin.ts'
import { BINARIES, makeTestDir, removeTestDir, run } from '../harness/processes.ts'
import { DEFAULT_NODE_FLAGS } from '../../packages/core/src/runtime/node-flags.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const node = process.execPath

/** Each option of a --help text, continuation lines joined. */
function options (help: string): string[] {
  const out: string[] = []
  let inOptions = false
  for (const line of help.split('\n')) {
    if (/^\S/.test(line)) {
      inOptions = line.startsWith('Options:')
      continue
    }
    if (!inOptions) {
      continue
    }
    if (/^ {2}-/.test(line)) {
      out.push(line.trim())
    } else if (line.trim() !== '' && out.length > 0) {
      out[out.length - 1] += ` ${line.trim()}`
    }
  }
  return out
}

describe('--help', () => {
  it.each([
    ['supernode', [BINARIES.supernode]],
    ['dfget', [BINARIES.dfget]],
    ['dfget daemon', [BINARIES.dfget, 'daemon']],
    ['dfctl', [BINARIES.dfctl]]
  ])('%s lists every flag with its default', async (_name, args) => {
    const { stdout, code } = await run(node, [...args, '--help'])
    expect(code).toBe(0)
    const opts = options(stdout)
    expect(opts.length).toBeGreaterThan(1)
    for (const opt of opts.filter(o => !/^-[hV], --(help|version)/.test(o))) {
      expect(opt, opt).toMatch(/default/)
    }
  })
})

describe('bad input', () => {
  it.each([
    ['supernode --listen nowhere', [BINARIES.supernode, '--listen', 'nowhere'], /--listen: invalid listen address "nowhere"/],
    ['supernode --piece-size 12', [BINARIES.supernode, '--piece-size', '12'], /--piece-size: /],
    ['dfget daemon --registry registry.local', [BINARIES.dfget, 'daemon', '--registry', 'registry.local'], /--registry: must be an http:\/\/ or https:\/\/ URL/],
    ['dfget daemon --config missing', [BINARIES.dfget, 'daemon', '--config', '/nonexistent/shoal.yaml'], /cannot read config file \/nonexistent\/shoal.yaml/],
    ['dfget <url> without -o', [BINARIES.dfget, 'http://127.0.0.1:9/x'], /--output: is required/],
    ['dfget --digest md5:abc', [BINARIES.dfget, 'http://127.0.0.1:9/x', '-o', '/tmp/x', '--digest', 'md5:abc'], /invalid digest "md5:abc"/],
    ['dfget without a URL', [BINARIES.dfget], /missing the URL/],
    ['dfget daemon --location eu||fra', [BINARIES.dfget, 'daemon', '--location', 'eu||fra'], /--location: must be up to 16 non-empty \|-separated parts/],
    ['dfget daemon --idc "two words"', [BINARIES.dfget, 'daemon', '--idc', 'two words'], /--idc: must be one word without \| or spaces/],
    ['dfget daemon --no-such-flag', [BINARIES.dfget, 'daemon', '--no-such-flag'], /unknown option '--no-such-flag'/]
  ])('%s exits non-zero naming the problem', async (_label, args, message) => {
    const { stderr, code } = await run(node, args, { timeoutMs: 20_000 })
    expect(code).not.toBe(0)
    expect(stderr).toMatch(message)
  })
})

describe('dfget <url> -o <file> through running processes', () => {
  let dir: string
  let origin: TestOrigin
  let supernode: SupernodeHandle
  let daemon: DaemonHandle

  beforeAll(async () => {
    dir = await makeTestDir('cli')
    origin = await startTestOrigin()
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [origin.url], pieceSize: 256 * 1024 })
    daemon = await startDaemon({ dir, name: 'host', registry: origin.url, supernode: supernode.url })
  })

  afterAll(async () => {
    await daemon?.proc.stop()
    await supernode?.proc.stop()
    await origin?.stop()
    await removeTestDir(dir)
  })

  it('runs the supernode and daemon under the node flags Shoal is measured with, in the process that was started', async () => {
    for (const pid of [supernode.proc.child.pid, daemon.proc.child.pid]) {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')
      expect(cmdline.slice(0, 4)).toEqual([node, ...DEFAULT_NODE_FLAGS])
    }
  })

  it('downloads and verifies a file, reporting what it did', async () => {
    const data = randomBytes(1024 * 1024 + 3)
    const { url, digest } = origin.add('/releases/app.tar', data)
    const output = join(dir, 'app.tar')
    const res = await run(node, [BINARIES.dfget, url, '-o', output, '--digest', digest, '--daemon', daemon.url])
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toContain(`${data.byteLength} bytes, ${digest} (verified)`)
    expect((await readFile(output)).equals(data)).toBe(true)
  })

  it('exits 1 and leaves nothing behind when the digest does not match', async () => {
    const { url } = origin.add('/releases/other.tar', randomBytes(1000))
    const output = join(dir, 'other.tar')
    const res = await run(node, [BINARIES.dfget, url, '-o', output, '--digest', sha256(Buffer.from('not it')), '--daemon', daemon.url])
    expect(res.code).toBe(1)
    expect(res.stderr).toMatch(/dfget: /)
    expect((await readdir(dir)).filter(f => f.includes('other.tar'))).toEqual([])
  })
})
