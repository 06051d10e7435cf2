/**
 * Several upstream registries through one mirror, with real parts: Debian
 * docker-registry instances holding the SAME repository and tag with different content
 * (one serving TLS with a CA of its own, given to the daemon as caFile and to the
 * supernode as --source-tls; one requiring htpasswd credentials that only the daemon
 * holds; a third with token auth, whose Bearer challenge the daemon answers with its own
 * credentials), a supernode, one daemon, and a real containerd whose `ctr` pulls each through
 * hosts.toml, so the mirror is asked with `?ns=<registry>`. Each pull must get its own
 * registry's content, and a registry the mirror does not know gets a 404.
 */
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startContainerd, writeHostsToml, type Containerd } from '../harness/containerd.ts'
import { generateImage, type GeneratedImage } from '../harness/image.ts'
import { sample, scrape } from '../harness/metrics.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { startDockerRegistry, type Registry } from '../harness/registry.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'
import { makeTestCertificate } from '../harness/tls.ts'
import { startTokenServer, type TokenServer } from '../harness/token-server.ts'

const MiB = 1024 * 1024
const REPO = 'team/app'
const TAG = 'v1'
/** The names image references give the registries; only the daemon's config maps them to addresses. */
const TLS_NAME = 'reg-tls.test:5443'
const AUTH_NAME = 'reg-auth.test:5000'
const TOKEN_NAME = 'reg-token.test:5000'
const UNKNOWN_NAME = 'reg-unknown.test:5000'
const BOT = { username: 'shoal-bot', password: 'pull only, please' }
const skip = requireReal({ binaries: ['containerd', 'ctr', 'docker-registry', 'openssl'], root: true })

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const blobDigests = (image: GeneratedImage): string[] => [image.config.digest, ...image.layers.map(l => l.digest)]

describe.skipIf(skip != null)(`three registries with the same repository through one mirror, pulled by containerd with ?ns=${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let tlsRegistry: Registry
  let authRegistry: Registry
  let tokens: TokenServer
  let tokenRegistry: Registry
  let supernode: SupernodeHandle
  let daemon: DaemonHandle
  let containerd: Containerd
  let hostsDir: string
  let tlsImage: GeneratedImage
  let authImage: GeneratedImage
  let tokenImage: GeneratedImage

  beforeAll(async () => {
    dir = await makeTestDir('upstreams')
    await mkdir(join(dir, 'tls'), { recursive: true })
    const cert = await makeTestCertificate(join(dir, 'tls'), ['127.0.0.1'])
    tlsRegistry = await startDockerRegistry(join(dir, 'reg-tls'), { tls: cert })
    authRegistry = await startDockerRegistry(join(dir, 'reg-auth'), { htpasswd: { [BOT.username]: BOT.password }, pushAuthorization: () => basic(BOT.username, BOT.password) })
    await mkdir(join(dir, 'reg-token'), { recursive: true })
    tokens = await startTokenServer(join(dir, 'reg-token'), { users: { [BOT.username]: { password: BOT.password, repositories: [REPO] } } })
    const t = tokens
    tokenRegistry = await startDockerRegistry(join(dir, 'reg-token'), {
      token: { realm: t.realm, service: t.service, issuer: t.issuer, rootCertBundle: t.certFile },
      pushAuthorization: (name) => `Bearer ${t.mint('pusher', [{ type: 'repository', name, actions: ['pull', 'push'] }])}`
    })

    // same repository and tag, different content
    tlsImage = await generateImage(await mkdtemp(join(dir, 'img-tls-')), REPO, TAG, [MiB + 1234, 3000])
    authImage = await generateImage(await mkdtemp(join(dir, 'img-auth-')), REPO, TAG, [MiB + 4321, 5000])
    tokenImage = await generateImage(await mkdtemp(join(dir, 'img-token-')), REPO, TAG, [MiB + 999, 7000])
    await tlsRegistry.push(tlsImage)
    await authRegistry.push(authImage)
    await tokenRegistry.push(tokenImage)

    const tlsHost = new URL(tlsRegistry.url).host
    supernode = await startSupernode({
      dir: join(dir, 'supernode'),
      allowSource: [tlsRegistry.url, authRegistry.url, tokenRegistry.url],
      pieceSize: 256 * 1024,
      extraArgs: ['--source-tls', `${tlsHost}=${cert.caFile}`]
    })
    const config = join(dir, 'daemon.yml')
    await writeFile(config, [
      'upstreams:',
      `  - name: ${TLS_NAME}`,
      `    url: ${tlsRegistry.url}`,
      `    caFile: ${cert.caFile}`,
      `  - name: ${AUTH_NAME}`,
      `    url: ${authRegistry.url}`,
      `    username: ${BOT.username}`,
      `    password: ${JSON.stringify(BOT.password)}`,
      `  - name: ${TOKEN_NAME}`,
      `    url: ${tokenRegistry.url}`,
      `    username: ${BOT.username}`,
      `    password: ${JSON.stringify(BOT.password)}`,
      ''
    ].join('\n'))
    // --registry (requests without ?ns=) is the TLS registry
    daemon = await startDaemon({ dir, name: 'host-a', registry: tlsRegistry.url, supernode: supernode.url, extraArgs: ['--config', config] })

    containerd = await startContainerd(join(dir, 'containerd'))
    hostsDir = join(dir, 'hosts.d')
    for (const name of [TLS_NAME, AUTH_NAME, TOKEN_NAME, UNKNOWN_NAME]) {
      await writeHostsToml(hostsDir, name, daemon.url)
    }
  }, 180_000)

  afterAll(async () => {
    await containerd?.stop()
    await daemon?.proc.stop()
    await supernode?.proc.stop()
    await tlsRegistry?.stop()
    await authRegistry?.stop()
    await tokenRegistry?.stop()
    await tokens?.stop()
    await removeTestDir(dir)
  }, 60_000)

  it('the registries really differ: same name and tag, other content; one refuses clients without credentials', async () => {
    expect(tlsImage.manifestDigest).not.toBe(authImage.manifestDigest)
    for (const digest of blobDigests(authImage)) {
      expect(blobDigests(tlsImage)).not.toContain(digest)
    }
    const anonymous = await request(`${authRegistry.url}/v2/${REPO}/manifests/${TAG}`, { signal: AbortSignal.timeout(10_000) })
    await anonymous.body.dump()
    expect(anonymous.statusCode).toBe(401)
  })

  it('ctr pulls each registry\'s image through the mirror and gets that registry\'s content, layers through the swarm', async () => {
    await containerd.pull(`${TLS_NAME}/${REPO}:${TAG}`, hostsDir)
    expect(await containerd.imageTarget(`${TLS_NAME}/${REPO}:${TAG}`)).toBe(tlsImage.manifestDigest)
    let content = await containerd.contentDigests()
    for (const digest of [tlsImage.manifestDigest, ...blobDigests(tlsImage)]) {
      expect(content, `${digest} of the TLS registry's image`).toContain(digest)
    }
    for (const digest of blobDigests(authImage)) {
      expect(content, 'nothing of the other registry yet').not.toContain(digest)
    }

    // the client sends no credentials: the daemon answers the registry's challenge with its own
    await containerd.pull(`${AUTH_NAME}/${REPO}:${TAG}`, hostsDir)
    expect(await containerd.imageTarget(`${AUTH_NAME}/${REPO}:${TAG}`)).toBe(authImage.manifestDigest)
    content = await containerd.contentDigests()
    for (const digest of [authImage.manifestDigest, ...blobDigests(authImage)]) {
      expect(content, `${digest} of the credentials registry's image`).toContain(digest)
    }

    // a token registry: the daemon gets a Bearer token from the realm with its credentials
    await containerd.pull(`${TOKEN_NAME}/${REPO}:${TAG}`, hostsDir)
    expect(await containerd.imageTarget(`${TOKEN_NAME}/${REPO}:${TAG}`)).toBe(tokenImage.manifestDigest)
    content = await containerd.contentDigests()
    for (const digest of [tokenImage.manifestDigest, ...blobDigests(tokenImage)]) {
      expect(content, `${digest} of the token registry's image`).toContain(digest)
    }
    expect(tokens.issued, 'tokens the realm issued').toContain(BOT.username)

    // every layer came through the swarm: the supernode fetched it from its registry
    // (over TLS with the CA it was given, or with the daemon's credentials)
    const metrics = await scrape(`${daemon.url}/metrics`)
    const layerBytes = tlsImage.layerBytes + authImage.layerBytes + tokenImage.layerBytes
    expect(sample(metrics, 'shoal_dfget_download_bytes_total', { source: 'supernode' })).toBeGreaterThanOrEqual(layerBytes)
    expect(sample(metrics, 'shoal_dfget_download_bytes_total', { source: 'origin' })).toBe(0)
  }, 240_000)

  it("keeps a client's own credentials: wrong ones get the registry's refusal, not the daemon's access", async () => {
    const layer = authImage.layers[0]!
    for (const path of [`/v2/${REPO}/blobs/${layer.digest}`, `/v2/${REPO}/manifests/${TAG}`]) {
      const res = await request(`${daemon.url}${path}?ns=${AUTH_NAME}`, { headers: { authorization: basic(BOT.username, 'wrong password') }, signal: AbortSignal.timeout(10_000) })
      const body = Buffer.from(await res.body.arrayBuffer())
      expect(res.statusCode, path).toBe(401)
      expect(String(res.headers['www-authenticate']), path).toMatch(/^Basic realm="shoal-test"/)
      expect(body.byteLength, path).toBeLessThan(2048)
    }
    // and without any, the daemon's own: the layer, checked
    const res = await request(`${daemon.url}/v2/${REPO}/blobs/${layer.digest}?ns=${AUTH_NAME}`, { signal: AbortSignal.timeout(30_000) })
    const body = Buffer.from(await res.body.arrayBuffer())
    expect(res.statusCode).toBe(200)
    expect(`sha256:${createHash('sha256').update(body).digest('hex')}`).toBe(layer.digest)
  })

  it('answers a registry it does not know with 404 NAME_UNKNOWN naming it, on every route, and ctr\'s pull of it fails', async () => {
    const paths = [`/v2/${REPO}/manifests/${TAG}`, `/v2/${REPO}/blobs/${tlsImage.layers[0]!.digest}`, `/v2/${REPO}/tags/list`, '/v2/']
    for (const path of paths) {
      const res = await request(`${daemon.url}${path}?ns=${UNKNOWN_NAME}`, { signal: AbortSignal.timeout(10_000) })
      const body = await res.body.text()
      expect(res.statusCode, `${path}: ${body}`).toBe(404)
      const error = (JSON.parse(body) as { errors: Array<{ code: string, message: string }> }).errors[0]
      expect(error?.code, path).toBe('NAME_UNKNOWN')
      expect(error?.message, path).toContain(UNKNOWN_NAME)
      expect(body, path).not.toContain(tlsImage.manifestDigest)
    }
    // the same repository and tag, known registry: the mirror still answers
    const known = await request(`${daemon.url}/v2/${REPO}/manifests/${TAG}?ns=${AUTH_NAME}`, {
      headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
      signal: AbortSignal.timeout(10_000)
    })
    await known.body.dump()
    expect(known.statusCode).toBe(200)
    expect(known.headers['docker-content-digest']).toBe(authImage.manifestDigest)

    await expect(containerd.pull(`${UNKNOWN_NAME}/${REPO}:${TAG}`, hostsDir)).rejects.toThrow(/failed/)
    expect(await containerd.imageTarget(`${UNKNOWN_NAME}/${REPO}:${TAG}`)).toBeUndefined()
  }, 120_000)
})
