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
import { requireReal } from '../harness/require-binary.ts'
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
    ['dfget proxy-ca', [BINARIES.dfget, 'proxy-ca']],
    ['dfget prefetch', [BINARIES.dfget, 'prefetch']],
    ['dfctl', [BINARIES.dfctl]],
    ['dfctl prefetch', [BINARIES.dfctl, 'prefetch']]
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
    ['dfget daemon --upstreams with a bad name', [BINARIES.dfget, 'daemon', '--upstreams', 'not a host=https://x.example'], /--upstreams\.0\.name: must be the registry host/],
    ['dfget daemon --upstreams with a bad URL', [BINARIES.dfget, 'daemon', '--upstreams', 'x.example=ftp://x.example'], /--upstreams\.0\.url: must be an http:\/\/ or https:\/\/ URL/],
    ['dfget daemon --upstreams naming Docker Hub twice', [BINARIES.dfget, 'daemon', '--upstreams', 'docker.io=https://a.example', 'index.docker.io=https://b.example'], /--upstreams\.1\.name: index\.docker\.io is configured twice/],
    ['supernode --source-tls with a bad host', [BINARIES.supernode, '--source-tls', 'not a host=/tmp/ca.pem'], /--source-tls\.0\.host: must be host or host:port/],
    ['dfget daemon --location eu||fra', [BINARIES.dfget, 'daemon', '--location', 'eu||fra'], /--location: must be up to 16 non-empty \|-separated parts/],
    ['dfget daemon --idc "two words"', [BINARIES.dfget, 'daemon', '--idc', 'two words'], /--idc: must be one word without \| or spaces/],
    ['dfget daemon --no-such-flag', [BINARIES.dfget, 'daemon', '--no-such-flag'], /unknown option '--no-such-flag'/],
    ['dfget daemon --proxy-allow 10.0.0.0/40', [BINARIES.dfget, 'daemon', '--proxy-allow', '10.0.0.0/40'], /--proxy-allow.0: "10.0.0.0\/40" has a prefix length outside 0-32/],
    ['dfget daemon --proxy-listen nowhere', [BINARIES.dfget, 'daemon', '--proxy-listen', 'nowhere'], /--proxy-listen: invalid listen address "nowhere"/],
    ['dfget proxy-ca before the daemon made one', [BINARIES.dfget, 'proxy-ca', '--data-dir', '/nonexistent/shoal'], /no proxy CA at \/nonexistent\/shoal\/proxy\/ca.crt yet: start the daemon once with --proxy-listen/],
    ['dfctl rollout --batch 0', [BINARIES.dfctl, 'rollout', '-i', '/nonexistent/fleet.yaml', '--batch', '0'], /--batch 0: must be a whole number of at least 1/],
    ['dfctl rollout with a missing inventory', [BINARIES.dfctl, 'rollout', '-i', '/nonexistent/fleet.yaml'], /cannot read inventory \/nonexistent\/fleet.yaml/],
    ['dfctl doctor --host unknown', [BINARIES.dfctl, 'doctor', '-i', '/nonexistent/fleet.yaml', '--host', 'x'], /cannot read inventory/],
    ['dfctl bundle -o a wrong name', [BINARIES.dfctl, 'bundle', '-o', '/tmp/shoal.tgz'], /-o must name the file shoal-0\.1\.0-linux-x64\.tar\.gz/]
  ])('%s exits non-zero naming the problem', async (_label, args, message) => {
    const { stderr, code } = await run(node, args, { timeoutMs: 20_000 })
    expect(code).not.toBe(0)
    expect(stderr).toMatch(message)
    // a message, not a crash
    expect(stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m)
  })

  it.each([
    ['dfget <url> without -o', [BINARIES.dfget, 'http://127.0.0.1:9/x'], /--output: is required/],
    ['dfget --digest md5:abc', [BINARIES.dfget, 'http://127.0.0.1:9/x', '-o', '/tmp/x', '--digest', 'md5:abc'], /invalid digest "md5:abc"/],
    ['dfget with two different URLs', [BINARIES.dfget, 'http://127.0.0.1:9/x', '-u', 'http://127.0.0.1:9/y', '-o', '/tmp/x'], /two URLs/],
    ['dfget prefetch with a bad reference', [BINARIES.dfget, 'prefetch', 'Not/A Reference'], /invalid image reference/],
    ['dfget prefetch without an image', [BINARIES.dfget, 'prefetch'], /missing required argument 'image'/]
  ])('%s exits 2 (usage)', async (_label, args, message) => {
    const { stderr, code } = await run(node, args, { timeoutMs: 20_000 })
    expect(stderr).toMatch(message)
    expect(code).toBe(2)
  })

  it.each([
    ['dfget <url>', [BINARIES.dfget, 'http://127.0.0.1:9/x', '-o', '/tmp/shoal-cli-unreachable']],
    ['dfget prefetch', [BINARIES.dfget, 'prefetch', 'alpine']]
  ])('%s exits 3 when the daemon cannot be reached', async (_label, args) => {
    // port 9 (discard) on loopback: nothing listens there
    const { stderr, code } = await run(node, [...args, '--daemon', 'http://127.0.0.1:9'], { timeoutMs: 20_000 })
    expect(stderr).toMatch(/cannot reach the dfget daemon at http:\/\/127.0.0.1:9/)
    expect(code).toBe(3)
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

  it('exits 4 and leaves nothing behind when the digest does not match', async () => {
    const { url } = origin.add('/releases/other.tar', randomBytes(1000))
    const output = join(dir, 'other.tar')
    const res = await run(node, [BINARIES.dfget, url, '-o', output, '--digest', sha256(Buffer.from('not it')), '--daemon', daemon.url])
    expect(res.code, res.stderr).toBe(4)
    expect(res.stderr).toMatch(/dfget: /)
    expect((await readdir(dir)).filter(f => f.includes('other.tar'))).toEqual([])
  })

  it('takes Dragonfly\'s spellings: -u/--url, -O and --header', async () => {
    const data = randomBytes(300 * 1024 + 1)
    const { url, digest } = origin.add('/releases/aliases.bin', data)
    for (const [i, args] of [['-u', url, '-O'], ['--url', url, '--output']].entries()) {
      const output = join(dir, `aliases-${i}.bin`)
      const res = await run(node, [BINARIES.dfget, ...args, output, '--header', 'X-Shoal-Test: alias', '--digest', digest, '--daemon', daemon.url])
      expect(res.code, res.stderr).toBe(0)
      expect((await readFile(output)).equals(data)).toBe(true)
    }
    // the header reached the source (the supernode's fetch of it)
    expect(origin.headers.get('/releases/aliases.bin')?.some(h => h['x-shoal-test'] === 'alias')).toBe(true)
  })

  it('exits 1 when the download fails, naming the reason', async () => {
    const res = await run(node, [BINARIES.dfget, `${origin.url}/releases/not-there.tar`, '-o', join(dir, 'not-there.tar'), '--daemon', daemon.url])
    expect(res.stderr).toMatch(/daemon answered 404/)
    expect(res.code).toBe(1)
  })

  it('prints plain progress lines when stderr is not a terminal, and none with --no-progress', async () => {
    const { url } = origin.add('/releases/progress.bin', randomBytes(512 * 1024))
    const res = await run(node, [BINARIES.dfget, url, '-o', join(dir, 'progress.bin'), '--daemon', daemon.url])
    expect(res.code, res.stderr).toBe(0)
    expect(res.stderr).toMatch(/dfget http:\/\/\S+\/releases\/progress.bin: 512\.0 KiB of 512\.0 KiB \(100%\), .*\/s; supernode 512\.0 KiB; via swarm/)
    const quiet = await run(node, [BINARIES.dfget, url, '-o', join(dir, 'progress-2.bin'), '--daemon', daemon.url, '--no-progress'])
    expect(quiet.code, quiet.stderr).toBe(0)
    expect(quiet.stderr).not.toMatch(/KiB/)
  })

  it('ends at once, exiting 0, when the reader of -o - goes away (dfget URL -o - | head -c 10)', async () => {
    // far more than a pipe holds, so dfget is still writing when head exits
    const data = randomBytes(16 * 1024 * 1024)
    const { url } = origin.add('/releases/big.bin', data)
    const started = performance.now()
    const res = await run('bash', ['-c', `"${node}" "${BINARIES.dfget}" "${url}" -o - --daemon "${daemon.url}" | head -c 10 | od -An -tx1; echo "dfget-exit=\${PIPESTATUS[0]}"`], { timeoutMs: 60_000 })
    const ms = performance.now() - started
    expect(res.stdout).toContain('dfget-exit=0')
    expect(res.stdout.split('\n')[0]?.replace(/\s/g, '')).toBe(data.subarray(0, 10).toString('hex'))
    expect(res.stderr).not.toMatch(/EPIPE|Error|at /)
    // the download timeout is 30 minutes: ending is not waiting for it
    expect(ms).toBeLessThan(30_000)
  })

  const noTerminal = requireReal({ binaries: ['script'] })
  it.skipIf(noTerminal != null)(`draws a bar with bytes, rate and ETA when stderr is a terminal${noTerminal != null ? ` (skipped: ${noTerminal})` : ''}`, async () => {
    const { url } = origin.add('/releases/tty.bin', randomBytes(2 * 1024 * 1024))
    // script(1) runs dfget on a pseudo-terminal
    const command = `"${node}" "${BINARIES.dfget}" "${url}" -o "${join(dir, 'tty.bin')}" --daemon "${daemon.url}"`
    const res = await run('script', ['-qec', command, '/dev/null'], { timeoutMs: 60_000 })
    expect(res.code, res.stdout).toBe(0)
    expect(res.stdout).toMatch(/\u2588+/)
    expect(res.stdout).toMatch(/2\.0 MiB\/2\.0 MiB .*\/s ETA \S+ supernode 2\.0 MiB via swarm/)
  })
})
