/**
 * Private registries for an unmodified dockerd: the daemon is dockerd's HTTPS_PROXY. A
 * real dockerd, trusting the Shoal proxy CA, pulls `198.18.86.2:5000/team/app` (unchanged
 * image name) from Debian's docker-registry serving TLS with its own certificate in a
 * network namespace (dockerd skips proxies for loopback, so the registry must not be on
 * it); the layers come through the swarm and the registry serves each once. Also: a
 * host the proxy does not list is tunnelled (curl sees the registry's own certificate),
 * a peer outside loopback and --proxy-allow is refused, and a plain-HTTP registry is
 * served through the same kind of proxy.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startDockerd, type Dockerd } from '../harness/dockerd.ts'
import { generateImage, type GeneratedImage } from '../harness/image.ts'
import { daemonBytes, sample, scrape } from '../harness/metrics.ts'
import { createNamespace, type TestNamespace } from '../harness/netns.ts'
import { makeTestDir, removeTestDir, run } from '../harness/processes.ts'
import { startDockerRegistry, type Registry } from '../harness/registry.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const MiB = 1024 * 1024
const SUBNET = '198.18.86'
const skip = requireReal({ binaries: ['dockerd', 'docker-registry', 'ip', 'openssl', 'curl'], root: true })

async function sh (command: string, args: string[]): Promise<string> {
  const res = await run(command, args, { timeoutMs: 60_000 })
  if (res.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${res.code}): ${res.stderr.trim()}`)
  }
  return res.stdout
}

/** GETs (status 200) of a blob that reached the registry, from its access log. */
async function blobGets (registry: Registry & { logFile: string }, digest: string): Promise<number> {
  const log = await readFile(registry.logFile, 'utf8')
  return log.split('\n').filter(line => line.includes(`"GET /v2/`) && line.includes(`/blobs/${digest} `) && / 200 /.test(line)).length
}

describe.skipIf(skip != null)(`dockerd pulls a private registry's image through the Shoal proxy${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let net: TestNamespace | undefined
  let tlsRegistry: Registry & { logFile: string }
  let plainRegistry: Registry & { logFile: string }
  let supernode: SupernodeHandle
  let daemon: DaemonHandle
  let plainDaemon: DaemonHandle
  let dockerd: Dockerd
  let image: GeneratedImage
  let plainImage: GeneratedImage
  let registryCa: string

  beforeAll(async () => {
    dir = await makeTestDir('proxy')
    net = await createNamespace('px', SUBNET)
    // the registry's own CA and certificate (for its IP): nothing of Shoal's
    registryCa = join(dir, 'registry-ca.crt')
    const caKey = join(dir, 'registry-ca.key')
    const key = join(dir, 'registry.key')
    const csr = join(dir, 'registry.csr')
    const cert = join(dir, 'registry.crt')
    const ext = join(dir, 'registry.ext')
    await sh('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', caKey, '-out', registryCa, '-days', '2', '-subj', '/CN=shoal test registry CA'])
    await sh('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=test registry'])
    await writeFile(ext, `subjectAltName=IP:${net.address}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`)
    await sh('openssl', ['x509', '-req', '-in', csr, '-CA', registryCa, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext])

    tlsRegistry = await startDockerRegistry(join(dir, 'registry-tls'), { listen: `${net.address}:5000`, exec: net.exec, tls: { certFile: cert, keyFile: key, caFile: registryCa } })
    plainRegistry = await startDockerRegistry(join(dir, 'registry-plain'), { listen: `${net.address}:5001`, exec: net.exec })
    image = await generateImage(await mkdtemp(join(dir, 'img-')), 'team/app', 'v1', [3 * MiB + 4321, 2 * MiB])
    plainImage = await generateImage(await mkdtemp(join(dir, 'img-')), 'team/plain', 'v1', [2 * MiB + 99])
    await tlsRegistry.push(image)
    await plainRegistry.push(plainImage)

    // the supernode and daemon trust the registry's own CA for it alone (--source-tls, caFile)
    const tlsHost = `${net.address}:5000`
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [tlsRegistry.url, plainRegistry.url], pieceSize: MiB, extraArgs: ['--source-tls', `${tlsHost}=${registryCa}`] })
    const config = join(dir, 'host-a.yaml')
    await writeFile(config, ['proxyListen: 127.0.0.1:0', 'upstreams:', `  - name: "${tlsHost}"`, `    url: ${tlsRegistry.url}`, `    caFile: ${registryCa}`,
      // a second upstream, plain HTTP: intercepted by name like the default one
      `  - name: "${net.address}:5001"`, `    url: ${plainRegistry.url}`, ''].join('\n'))
    daemon = await startDaemon({ dir, name: 'host-a', registry: tlsRegistry.url, supernode: supernode.url, extraArgs: ['--config', config] })
    // host-b's proxy listens on the link to the namespace and lets only this side's address
    // in (--proxy-allow): the registry's side of the link is a peer it must refuse
    plainDaemon = await startDaemon({ dir, name: 'host-b', registry: plainRegistry.url, supernode: supernode.url, extraArgs: ['--proxy-listen', `${net.hostAddress}:0`, '--proxy-allow', `${net.hostAddress}/32`, '--proxy-connect-timeout', '1000'] })

    // dockerd trusts the system CAs plus the Shoal proxy CA (Go reads SSL_CERT_FILE), and
    // not the registry's own CA: whatever it pulls came through the proxy
    const bundle = join(dir, 'dockerd-ca-bundle.crt')
    const shoalCa = (await sh(process.execPath, [join(process.cwd(), 'packages/dfget/dist/bin/dfget.js'), 'proxy-ca', '--data-dir', join(dir, 'host-a', 'data')]))
    await writeFile(bundle, `${await readFile('/etc/ssl/certs/ca-certificates.crt', 'utf8').catch(() => '')}\n${shoalCa}`)
    dockerd = await startDockerd(join(dir, 'dockerd'), null, {
      env: { HTTPS_PROXY: daemon.proxy, HTTP_PROXY: daemon.proxy, NO_PROXY: '', SSL_CERT_FILE: bundle }
    })
  })

  afterAll(async () => {
    await dockerd?.stop()
    await Promise.allSettled([daemon, plainDaemon].map(async d => d?.proc.stop()))
    await supernode?.proc.stop()
    await tlsRegistry?.stop()
    await plainRegistry?.stop()
    await net?.remove()
    await removeTestDir(dir)
  })

  it('pulls 198.18.86.2:5000/team/app:v1 unchanged, its layers through the swarm, each fetched from the registry once', async () => {
    const ref = `${net!.address}:5000/team/app:v1`
    await dockerd.pull(ref)
    expect(await dockerd.imageId(ref)).toBe(image.imageId)

    const bytes = await daemonBytes(daemon.url)
    expect(bytes.origin).toBe(0)
    expect(bytes.supernode + bytes.peer).toBeGreaterThanOrEqual(image.layerBytes)
    const metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_proxy_requests_total', { kind: 'intercepted' })).toBeGreaterThanOrEqual(1)
    for (const layer of image.layers) {
      expect(await blobGets(tlsRegistry, layer.digest), `registry GETs of ${layer.digest}`).toBe(1)
    }
  })

  it('tunnels a host it does not list untouched: curl sees the registry\'s own certificate', async () => {
    // host-b lists only the plain registry, so the TLS one is just another host to it
    const out = await sh('curl', ['-sS', '--max-time', '20', '-x', plainDaemon.proxy!, '--cacert', registryCa, '-o', '/dev/null', '-w', '%{http_code} %{ssl_verify_result}', `${tlsRegistry.url}/v2/`])
    expect(out).toBe('200 0')
    const metrics = await scrape(`${plainDaemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_proxy_requests_total', { kind: 'tunnelled' })).toBeGreaterThanOrEqual(1)
  })

  it('intercepts every upstream by name, not only the default one', async () => {
    const before = sample(await scrape(`${daemon.url}/metrics`), 'shoal_dfget_proxy_requests_total', { kind: 'intercepted' })
    const layer = plainImage.layers[0]!
    const file = join(dir, 'second-upstream.bin')
    const code = await sh('curl', ['-sS', '--max-time', '60', '-x', daemon.proxy!, '-o', file, '-w', '%{http_code}', `${plainRegistry.url}/v2/${plainImage.name}/blobs/${layer.digest}`])
    expect(code).toBe('200')
    expect(`sha256:${createHash('sha256').update(await readFile(file)).digest('hex')}`).toBe(layer.digest)
    expect(sample(await scrape(`${daemon.url}/metrics`), 'shoal_dfget_proxy_requests_total', { kind: 'intercepted' })).toBe(before + 1)
  })

  it('answers 502 when a tunnel\'s target does not answer within --proxy-connect-timeout', async () => {
    // nobody has .3 on the link: the connect hangs on ARP for seconds, longer than the timeout
    const started = Date.now()
    const res = await run('curl', ['-sS', '--max-time', '20', '-x', plainDaemon.proxy!, '-o', '/dev/null', '-w', '%{http_connect}', `https://${SUBNET}.3:443/`])
    expect(res.stdout).toBe('502')
    expect(Date.now() - started).toBeLessThan(2_500)
  })

  it('refuses a peer outside loopback and --proxy-allow: never an open relay', async () => {
    const res = await run('ip', ['netns', 'exec', net!.ns, 'curl', '-sS', '--max-time', '20', '-x', plainDaemon.proxy!, '-o', '/dev/null', '-w', '%{http_code}', `${plainRegistry.url}/v2/`])
    expect(res.stdout).toBe('403')
    const metrics = await scrape(`${plainDaemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_proxy_requests_total', { kind: 'refused' })).toBe(1)
  })

  it('serves a plain-HTTP registry through the proxy, blobs through the swarm', async () => {
    const layer = plainImage.layers[0]!
    const url = `${plainRegistry.url}/v2/${plainImage.name}/blobs/${layer.digest}`
    for (let i = 0; i < 2; i++) {
      const file = join(dir, `plain-${i}.bin`)
      const code = await sh('curl', ['-sS', '--max-time', '60', '-x', plainDaemon.proxy!, '-o', file, '-w', '%{http_code}', url])
      expect(code).toBe('200')
      expect(`sha256:${createHash('sha256').update(await readFile(file)).digest('hex')}`).toBe(layer.digest)
    }
    const bytes = await daemonBytes(plainDaemon.url)
    expect(bytes.origin).toBe(0)
    expect(bytes.supernode + bytes.peer).toBeGreaterThanOrEqual(layer.size)
    expect(await blobGets(plainRegistry, layer.digest)).toBe(1)
  })
})
