import { once } from 'node:events'
import { createReadStream } from 'node:fs'
import { writeFile, mkdir } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import { Agent, request, type Dispatcher } from 'undici'
import { MANIFEST_V2, type Blob, type GeneratedImage, type MultiPlatformImage } from './image.ts'
import { startProcess } from './processes.ts'
import { which } from './require-binary.ts'

export interface Registry {
  /** Base URL, such as http://127.0.0.1:5000 */
  url: string
  kind: 'docker-registry' | 'shoal-demo-origin'
  /** The registry's process, when it runs as one (for CPU accounting) */
  pid?: number | undefined
  push(image: GeneratedImage): Promise<void>
  stop(): Promise<void>
}

export async function freePort (): Promise<number> {
  const server = createNetServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

async function waitForHttp (url: string, timeoutMs = 20_000, dispatcher?: Dispatcher): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    try {
      const res = await request(url, { signal: AbortSignal.timeout(1_000), ...(dispatcher != null ? { dispatcher } : {}) })
      await res.body.dump()
      if (res.statusCode < 500) {
        return
      }
    } catch {}
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`)
}

export interface DockerRegistryOptions {
  /** host:port to listen on. @default 127.0.0.1 on a free port */
  listen?: string
  /** Run as a pull-through cache of this registry (`proxy.remoteurl`). */
  proxyRemoteUrl?: string
  /** Wraps the command line, such as `ip netns exec <ns>` to run it on a test host. */
  exec?: (command: string, args: string[]) => { command: string, args: string[] }
  /** Basic auth for every request (`auth.htpasswd`): user → password, stored bcrypt'd. */
  htpasswd?: Record<string, string>
  /** Token auth (`auth.token`): the token server's realm, service, issuer and the PEM file of its certificate. */
  token?: { realm: string, service: string, issuer: string, rootCertBundle: string }
  /** The Authorization header `push` sends for a repository, for a registry with auth. */
  pushAuthorization?: (name: string) => string
  /** Serve HTTPS with this certificate (PEM files); `ca` is what the harness trusts to reach it. */
  tls?: { certFile: string, keyFile: string, caFile: string }
}

async function authConfig (dir: string, options: DockerRegistryOptions): Promise<string[]> {
  if (options.htpasswd != null) {
    const { hashSync } = await import('bcryptjs')
    const path = join(dir, 'htpasswd')
    // cost 5: the registry checks the hash on every request
    await writeFile(path, Object.entries(options.htpasswd).map(([user, password]) => `${user}:${hashSync(password, 5)}\n`).join(''))
    return ['auth:', '  htpasswd:', '    realm: shoal-test', `    path: ${path}`]
  }
  if (options.token != null) {
    const t = options.token
    return ['auth:', '  token:', `    realm: ${t.realm}`, `    service: ${t.service}`, `    issuer: ${t.issuer}`, `    rootcertbundle: ${t.rootCertBundle}`]
  }
  return []
}

/**
 * Debian's docker-registry (the Distribution registry), storing in `dir`: on loopback by
 * default, or wherever `options` put it; a plain registry or a pull-through cache.
 */
export async function startDockerRegistry (dir: string, options: DockerRegistryOptions = {}): Promise<Registry & { logFile: string }> {
  const binary = which('docker-registry')
  if (binary == null) {
    throw new Error('docker-registry is not installed')
  }
  await mkdir(join(dir, 'storage'), { recursive: true })
  const listen = options.listen ?? `127.0.0.1:${await freePort()}`
  const config = join(dir, 'config.yml')
  await writeFile(config, [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'storage')}`,
    'http:',
    `  addr: ${listen}`,
    ...(options.tls != null ? ['  tls:', `    certificate: ${options.tls.certFile}`, `    key: ${options.tls.keyFile}`] : []),
    ...(options.proxyRemoteUrl != null ? ['proxy:', `  remoteurl: ${options.proxyRemoteUrl}`] : []),
    ...await authConfig(dir, options),
    ''
  ].join('\n'))
  const logFile = join(dir, 'registry.log')
  const exec = options.exec ?? ((command, args) => ({ command, args }))
  const { proc } = await startProcess({ ...exec(binary, ['serve', config]), logFile })
  const url = `${options.tls != null ? 'https' : 'http'}://${listen}`
  // the harness's own client of a TLS registry trusts only its CA
  const dispatcher = options.tls != null ? new Agent({ connect: { ca: readFileSync(options.tls.caFile, 'utf8') } }) : undefined
  try {
    await waitForHttp(`${url}/v2/`, 20_000, dispatcher)
  } catch (err) {
    await proc.stop()
    await dispatcher?.close()
    throw err
  }
  return {
    url,
    kind: 'docker-registry',
    pid: proc.child.pid,
    logFile,
    push: async (image) => { await pushImage(url, image, options.pushAuthorization?.(image.name), dispatcher) },
    stop: async () => { await proc.stop(); await dispatcher?.close() }
  }
}

/** Uploads one blob into a repository with a monolithic upload (POST, then PUT). */
export async function pushBlob (registryUrl: string, name: string, blob: Pick<Blob, 'digest' | 'size' | 'path'>, authorization?: string, dispatcher?: Dispatcher): Promise<void> {
  const auth: Record<string, string> = authorization != null ? { authorization } : {}
  const via = dispatcher != null ? { dispatcher } : {}
  const start = await request(`${registryUrl}/v2/${name}/blobs/uploads/`, { method: 'POST', headers: auth, signal: AbortSignal.timeout(30_000), ...via })
  await start.body.dump()
  const location = start.headers.location
  if (start.statusCode !== 202 || typeof location !== 'string') {
    throw new Error(`upload of ${blob.digest} not accepted: ${start.statusCode}`)
  }
  const target = new URL(location, registryUrl)
  target.searchParams.set('digest', blob.digest)
  const put = await request(target, {
    method: 'PUT',
    headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(blob.size) },
    body: createReadStream(blob.path),
    signal: AbortSignal.timeout(600_000),
    ...via
  })
  const text = await put.body.text()
  if (put.statusCode !== 201) {
    throw new Error(`upload of ${blob.digest} failed: ${put.statusCode} ${text}`)
  }
}

/** PUTs a manifest (or index) under a tag or its digest. */
async function pushManifest (registryUrl: string, name: string, reference: string, body: Buffer, contentType: string, authorization?: string, dispatcher?: Dispatcher): Promise<void> {
  const res = await request(`${registryUrl}/v2/${name}/manifests/${reference}`, {
    method: 'PUT',
    headers: { ...(authorization != null ? { authorization } : {}), 'content-type': contentType },
    body,
    signal: AbortSignal.timeout(30_000),
    ...(dispatcher != null ? { dispatcher } : {})
  })
  const text = await res.body.text()
  if (res.statusCode !== 201) {
    throw new Error(`manifest push of ${name}:${reference} failed: ${res.statusCode} ${text}`)
  }
}

/** Pushes an image with the registry HTTP API: monolithic blob uploads, then the manifest. */
export async function pushImage (registryUrl: string, image: GeneratedImage, authorization?: string, dispatcher?: Dispatcher): Promise<void> {
  for (const blob of [image.config, ...image.layers]) {
    await pushBlob(registryUrl, image.name, blob, authorization, dispatcher)
  }
  await pushManifest(registryUrl, image.name, image.tag, image.manifest, image.manifestType, authorization, dispatcher)
}

/** Pushes each platform's blobs and manifest (by digest), then the index or manifest list under the tag. */
export async function pushMultiPlatformImage (registryUrl: string, image: MultiPlatformImage, authorization?: string, dispatcher?: Dispatcher): Promise<void> {
  for (const platform of image.images) {
    for (const blob of [platform.config, ...platform.layers]) {
      await pushBlob(registryUrl, image.name, blob, authorization, dispatcher)
    }
    await pushManifest(registryUrl, image.name, platform.manifestDigest, platform.manifest, platform.manifestType, authorization, dispatcher)
  }
  await pushManifest(registryUrl, image.name, image.tag, image.index, image.indexType, authorization, dispatcher)
}

/**
 * The origin Shoal ships for the demo when Debian's docker-registry is not installed:
 * a read-only registry (GET/HEAD of /v2/, manifests and blobs) serving generated
 * images from their files.
 */
export async function startDemoOrigin (): Promise<Registry> {
  const blobs = new Map<string, Blob>()
  const manifests = new Map<string, Buffer>()
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const headers = { 'docker-distribution-api-version': 'registry/2.0' }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, headers).end()
      return
    }
    if (url.pathname === '/v2/') {
      res.writeHead(200, { ...headers, 'content-type': 'application/json' }).end('{}')
      return
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname)
    const notFound = (): void => { res.writeHead(404, { ...headers, 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: m?.[2] === 'blobs' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN', message: 'not found' }] })) }
    if (m?.[2] === 'manifests') {
      const body = manifests.get(`${m[1]}:${m[3]}`)
      if (body == null) {
        notFound()
        return
      }
      res.writeHead(200, { ...headers, 'content-type': MANIFEST_V2, 'content-length': body.byteLength })
      res.end(req.method === 'HEAD' ? undefined : body)
      return
    }
    const blob = m?.[2] === 'blobs' ? blobs.get(m[3] ?? '') : undefined
    if (blob == null) {
      notFound()
      return
    }
    res.writeHead(200, { ...headers, 'content-type': 'application/octet-stream', 'content-length': blob.size, 'docker-content-digest': blob.digest })
    if (req.method === 'HEAD') {
      res.end()
      return
    }
    createReadStream(blob.path).pipe(res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    kind: 'shoal-demo-origin',
    async push (image) {
      for (const blob of [image.config, ...image.layers]) {
        blobs.set(blob.digest, blob)
      }
      manifests.set(`${image.name}:${image.tag}`, image.manifest)
      manifests.set(`${image.name}:${image.manifestDigest}`, image.manifest)
    },
    async stop () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

