import { lookup } from 'node:dns'
import { once } from 'node:events'
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { duplexPair } from 'node:stream'
import { TLSSocket } from 'node:tls'
import { createLogger } from '@shoal/core'
import { Counter, Registry } from 'prom-client'
import { ProxyAgent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseConnectTarget, PeerAccess, parseCidr } from '../src/proxy/access.ts'
import { upstreamHosts } from '../src/proxy/intercepted.ts'
import { Upstreams } from '../src/mirror/upstreams.ts'
import { LocalCa } from '../src/proxy/local-ca.ts'
import { ProxyServer } from '../src/proxy/proxy-server.ts'

const logger = createLogger({ level: 'silent' })

/** Sends raw bytes to the proxy and reads until it closes or `until` matches. */
async function raw (port: number, text: string, until = /\r\n\r\n/): Promise<string> {
  const socket = connect(port, '127.0.0.1')
  await once(socket, 'connect')
  socket.write(text)
  let got = ''
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000)
    socket.on('data', (d: Buffer) => { got += d.toString(); if (until.test(got)) { clearTimeout(timer); resolve() } })
    socket.on('close', () => { clearTimeout(timer); resolve() })
    socket.on('error', () => {})
  })
  socket.destroy()
  return got
}

/** A plain-HTTP request to the proxy in absolute form, as HTTP_PROXY clients send it. */
async function viaProxy (proxyPort: number, target: string, method = 'GET'): Promise<{ status: number, body: string }> {
  const url = new URL(target)
  const req = httpRequest({ method, host: '127.0.0.1', port: proxyPort, path: target, headers: { host: url.host }, signal: AbortSignal.timeout(10_000) })
  req.end(method === 'GET' ? undefined : 'pushed bytes')
  const [res] = await once(req, 'response') as [IncomingMessage]
  let body = ''
  for await (const chunk of res) {
    body += String(chunk)
  }
  return { status: res.statusCode ?? 0, body }
}

describe('the daemon HTTP(S) proxy', () => {
  let dir: string
  let ca: LocalCa
  let otherCa: LocalCa
  let proxy: ProxyServer
  let proxyPort: number
  let tlsServer: NetServer
  let tlsPort: number
  let httpServer: Server
  let httpPort: number
  const mirrorSaw: string[] = []
  const metrics = new Registry()
  const requests = new Counter({ name: 'proxy_requests', help: 'test', labelNames: ['kind'], registers: [metrics] })

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-proxy-'))
    ca = await LocalCa.open(dir)
    // the "real" servers' own CA, which the proxy never sees
    otherCa = await LocalCa.open(join(dir, 'other'))
    const secureContext = await otherCa.contextFor('127.0.0.1')
    tlsServer = createNetServer((plain) => {
      const socket = new TLSSocket(plain, { isServer: true, secureContext })
      socket.on('error', () => {})
      socket.once('data', () => { socket.end('HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\noriginal') })
    })
    tlsServer.listen(0, '127.0.0.1')
    await once(tlsServer, 'listening')
    tlsPort = (tlsServer.address() as AddressInfo).port
    httpServer = createHttpServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => { body += d.toString() })
      req.on('end', () => { res.end(`plain ${req.method} ${req.url}${body !== '' ? ` ${body}` : ''}`) })
    })
    httpServer.listen(0, '127.0.0.1')
    await once(httpServer, 'listening')
    httpPort = (httpServer.address() as AddressInfo).port

    proxy = new ProxyServer({
      logger,
      ca,
      requests,
      intercepted: { has: (name) => ['registry.test:5000', 'registry.test', '198.18.86.9', `127.0.0.1:${httpPort}`].includes(name) },
      mirror: (req, res) => {
        mirrorSaw.push(`${req.method} ${req.url}`)
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ mirror: req.url }))
      }
    }, { listen: { host: '127.0.0.1', port: 0 }, connectTimeout: 2_000 })
    await proxy.start()
    proxyPort = Number(new URL(proxy.url).port)
  })

  afterAll(async () => {
    await proxy?.stop()
    tlsServer?.close()
    httpServer?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('generates its CA once, the key 0600, and loads the same one again', async () => {
    const key = await stat(join(dir, 'proxy', 'ca.key'))
    expect(key.mode & 0o777).toBe(0o600)
    const pem = await readFile(join(dir, 'proxy', 'ca.crt'), 'utf8')
    expect(pem).toContain('BEGIN CERTIFICATE')
    expect(ca.certPem).toBe(pem)
    const again = await LocalCa.open(dir)
    expect(again.certPem).toBe(pem)
  })

  it('writes the CA whole, leaving no temporary file, and says why it cannot generate one', async () => {
    const fresh = join(dir, 'fresh')
    await LocalCa.open(fresh)
    expect((await readdir(join(fresh, 'proxy'))).sort()).toEqual(['ca.crt', 'ca.key'])
    // a proxy directory that is a file: nowhere to write
    const blocked = join(dir, 'blocked')
    await mkdir(blocked)
    await writeFile(join(blocked, 'proxy'), 'not a directory')
    await expect(LocalCa.open(blocked)).rejects.toMatchObject({ code: 'ERR_PROXY_CA' })
    // a dangling link where the certificate goes: looks absent, and is in the way of the write
    const inTheWay = join(dir, 'in-the-way')
    await mkdir(join(inTheWay, 'proxy'), { recursive: true })
    await symlink(join(inTheWay, 'nowhere'), join(inTheWay, 'proxy', 'ca.crt'))
    await expect(LocalCa.open(inTheWay)).rejects.toMatchObject({ code: 'ERR_PROXY_CA', message: expect.stringMatching(/cannot generate the proxy CA/) })
    expect((await readdir(join(inTheWay, 'proxy'))).filter(f => f.endsWith('.tmp'))).toEqual([])
  })

  it('refuses to start with half a CA, and makes a key others could read 0600 again', async () => {
    const half = join(dir, 'half')
    await LocalCa.open(half)
    await rm(join(half, 'proxy', 'ca.key'))
    await expect(LocalCa.open(half)).rejects.toMatchObject({ code: 'ERR_PROXY_CA', message: expect.stringMatching(/ca\.key is missing but .*ca\.crt exists/) })
    // a key from another CA
    const stranger = join(dir, 'stranger')
    await LocalCa.open(stranger)
    await copyFile(join(stranger, 'proxy', 'ca.key'), join(half, 'proxy', 'ca.key'))
    await expect(LocalCa.open(half)).rejects.toMatchObject({ code: 'ERR_PROXY_CA', message: expect.stringMatching(/ca\.key is not the key of/) })
    await chmod(join(dir, 'proxy', 'ca.key'), 0o644)
    await LocalCa.open(dir)
    expect((await stat(join(dir, 'proxy', 'ca.key'))).mode & 0o777).toBe(0o600)
  })

  it('terminates CONNECT to a listed registry with a certificate from its CA and hands the request to the mirror with ?ns=', async () => {
    const dispatcher = new ProxyAgent({ uri: proxy.url, requestTls: { ca: ca.certPem } })
    try {
      const res = await request('https://registry.test:5000/v2/team/app/manifests/v1?x=1', { dispatcher, signal: AbortSignal.timeout(10_000) })
      expect(res.statusCode).toBe(200)
      expect(await res.body.json()).toEqual({ mirror: '/v2/team/app/manifests/v1?x=1&ns=registry.test%3A5000' })
      // the default port is not part of the name; an IP address gets an IP SAN
      const hub = await request('https://registry.test/v2/', { dispatcher, signal: AbortSignal.timeout(10_000) })
      expect(await hub.body.json()).toEqual({ mirror: '/v2/?ns=registry.test' })
      const ip = await request('https://198.18.86.9/v2/', { dispatcher, signal: AbortSignal.timeout(10_000) })
      expect(await ip.body.json()).toEqual({ mirror: '/v2/?ns=198.18.86.9' })
      // only the registry API: the daemon's own API is not the registry's
      const api = await request('https://registry.test/api/v1/downloads', { dispatcher, signal: AbortSignal.timeout(10_000) })
      expect(api.statusCode).toBe(404)
      await api.body.dump()
      expect(mirrorSaw).not.toContain('GET /api/v1/downloads')
    } finally {
      await dispatcher.close()
    }
  })

  it('tunnels CONNECT to a host not listed untouched: the client sees the original certificate', async () => {
    const trustsOriginal = new ProxyAgent({ uri: proxy.url, requestTls: { ca: otherCa.certPem } })
    const trustsShoal = new ProxyAgent({ uri: proxy.url, requestTls: { ca: ca.certPem } })
    try {
      const res = await request(`https://127.0.0.1:${tlsPort}/`, { dispatcher: trustsOriginal, signal: AbortSignal.timeout(10_000) })
      expect(res.statusCode).toBe(200)
      expect(await res.body.text()).toBe('original')
      // had the proxy re-signed it, a client trusting only the proxy CA would get through
      await expect(request(`https://127.0.0.1:${tlsPort}/`, { dispatcher: trustsShoal, signal: AbortSignal.timeout(10_000) })).rejects.toThrow()
    } finally {
      await trustsOriginal.close()
      await trustsShoal.close()
    }
  })

  it('serves plain-HTTP requests for listed registries through the mirror and forwards the rest', async () => {
    expect(await viaProxy(proxyPort, 'http://registry.test:5000/v2/a/blobs/sha256:00')).toEqual({ status: 200, body: JSON.stringify({ mirror: '/v2/a/blobs/sha256:00?ns=registry.test%3A5000' }) })
    expect(await viaProxy(proxyPort, `http://localhost:${httpPort}/some/path?q=1`)).toEqual({ status: 200, body: 'plain GET /some/path?q=1' })
  })

  it('passes writes to an intercepted registry (a push) on to it: the mirror is read-only', async () => {
    expect(await viaProxy(proxyPort, `http://127.0.0.1:${httpPort}/v2/`)).toEqual({ status: 200, body: JSON.stringify({ mirror: `/v2/?ns=127.0.0.1%3A${httpPort}` }) })
    expect(await viaProxy(proxyPort, `http://127.0.0.1:${httpPort}/v2/a/blobs/uploads/`, 'POST')).toEqual({ status: 200, body: 'plain POST /v2/a/blobs/uploads/ pushed bytes' })
  })

  it('answers malformed requests with 400 and unreachable targets with 502, and keeps serving', async () => {
    expect(await raw(proxyPort, 'CONNECT not a target HTTP/1.1\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/)
    expect(await raw(proxyPort, 'CONNECT host:99999 HTTP/1.1\r\nhost: host:99999\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/)
    expect(await raw(proxyPort, 'CONNECT bad_host!:443 HTTP/1.1\r\nhost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/)
    expect(await raw(proxyPort, 'GET /v2/ HTTP/1.1\r\nhost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/)
    expect(await raw(proxyPort, 'NOT HTTP AT ALL\r\n\r\n')).toMatch(/^HTTP\/1\.1 400/)
    // a port nobody listens on
    const closed = createHttpServer()
    closed.listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const deadPort = (closed.address() as AddressInfo).port
    closed.close()
    expect(await raw(proxyPort, `CONNECT 127.0.0.1:${deadPort} HTTP/1.1\r\nhost: x\r\n\r\n`)).toMatch(/^HTTP\/1\.1 502/)
    expect((await viaProxy(proxyPort, `http://127.0.0.1:${deadPort}/`)).status).toBe(502)
    expect(await viaProxy(proxyPort, `http://localhost:${httpPort}/still`)).toEqual({ status: 200, body: 'plain GET /still' })
  })

  it('closes a tunnel both ways: a half-close passes through, and an idle tunnel is cut', async () => {
    // an upstream that answers what it got once the client is done sending, then closes
    const echo = createNetServer((socket) => {
      let got = ''
      socket.on('data', (d: Buffer) => { got += d.toString() })
      socket.on('end', () => { socket.end(`got ${got}`) })
      socket.on('error', () => {})
    })
    echo.listen(0, '127.0.0.1')
    await once(echo, 'listening')
    const echoPort = (echo.address() as AddressInfo).port
    const quick = new ProxyServer({ logger, ca, intercepted: { has: () => false }, mirror: (_req, res) => { res.end() } },
      { listen: { host: '127.0.0.1', port: 0 }, idleTimeout: 500 })
    await quick.start()
    try {
      const port = Number(new URL(quick.url).port)
      const socket = connect(port, '127.0.0.1')
      socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nhost: x\r\n\r\n`)
      let got = ''
      socket.on('data', (d: Buffer) => {
        got += d.toString()
        if (got.endsWith('\r\n\r\n')) {
          socket.end('hello')
        }
      })
      await once(socket, 'close')
      expect(got).toBe('HTTP/1.1 200 Connection Established\r\n\r\ngot hello')

      // a tunnel nobody uses is closed after the idle timeout
      const idle = connect(port, '127.0.0.1')
      idle.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nhost: x\r\n\r\n`)
      idle.resume()
      const started = Date.now()
      await once(idle, 'close')
      expect(Date.now() - started).toBeGreaterThanOrEqual(400)
      expect(Date.now() - started).toBeLessThan(5_000)
    } finally {
      await quick.stop()
      echo.close()
    }
  })

  it('refuses a peer that is not on loopback before reading its request', async () => {
    const [client, server] = duplexPair()
    Object.defineProperty(server, 'remoteAddress', { value: '203.0.113.7' })
    const before = (await requests.get()).values.find(v => v.labels.kind === 'refused')?.value ?? 0
    // what a remote peer's connection looks like to the server
    ;(proxy as unknown as { outer: Server }).outer.emit('connection', server)
    client.write(`CONNECT 127.0.0.1:${tlsPort} HTTP/1.1\r\nhost: x\r\n\r\n`)
    let got = ''
    for await (const chunk of client) {
      got += String(chunk)
    }
    expect(got).toMatch(/^HTTP\/1\.1 403/)
    const after = (await requests.get()).values.find(v => v.labels.kind === 'refused')?.value ?? 0
    expect(after).toBe(before + 1)
  })

  it('refuses remote peers loopback and link-local targets however they are written or resolved', async () => {
    const aliases: Record<string, string> = { 'loopback-alias.test': '127.0.0.1', 'metadata-alias.test': '169.254.169.254', 'v6-alias.test': '::1' }
    const remote = new ProxyServer({
      logger,
      ca,
      intercepted: { has: () => false },
      mirror: (_req, res) => { res.writeHead(500).end() },
      resolve: (hostname, options, callback) => {
        const address = aliases[hostname]
        if (address == null) {
          lookup(hostname, options, callback)
          return
        }
        callback(null, [{ address, family: address.includes(':') ? 6 : 4 }])
      }
    }, { listen: { host: '127.0.0.1', port: 0 }, allow: ['203.0.113.0/24'], connectTimeout: 2_000 })
    await remote.start()
    /** What a peer at 203.0.113.7 (allowed by --proxy-allow) gets for a raw request. */
    const asRemote = async (text: string): Promise<string> => {
      const [client, server] = duplexPair()
      Object.defineProperty(server, 'remoteAddress', { value: '203.0.113.7' })
      ;(remote as unknown as { outer: Server }).outer.emit('connection', server)
      client.write(text)
      let got = ''
      const timer = setTimeout(() => { client.destroy() }, 5_000)
      try {
        for await (const chunk of client) {
          got += String(chunk)
          if (/\r\n\r\n/.test(got) && !got.startsWith('HTTP/1.1 200 Connection')) {
            break
          }
        }
      } catch {}
      clearTimeout(timer)
      client.destroy()
      return got
    }
    try {
      for (const host of ['[0:0:0:0:0:0:0:1]', '[::ffff:7f00:1]', '[::ffff:127.0.0.1]', '127.1', 'loopback-alias.test', 'v6-alias.test', '169.254.169.254', 'metadata-alias.test', '[fe80::1]', '0.0.0.0']) {
        const connectAnswer = await asRemote(`CONNECT ${host}:${tlsPort} HTTP/1.1\r\nhost: x\r\n\r\n`)
        expect(connectAnswer, `CONNECT ${host}`).toMatch(/^HTTP\/1\.1 403/)
        const getAnswer = await asRemote(`GET http://${host}:${httpPort}/secret HTTP/1.1\r\nhost: ${host}:${httpPort}\r\nconnection: close\r\n\r\n`)
        expect(getAnswer, `GET ${host}`).toMatch(/^HTTP\/1\.1 403/)
        expect(getAnswer, `GET ${host}`).not.toContain('plain GET')
      }
      // a loopback peer still reaches them
      expect((await viaProxy(Number(new URL(remote.url).port), `http://127.1:${httpPort}/ok`)).body).toBe('plain GET /ok')
    } finally {
      await remote.stop()
    }
  })

  it('allows loopback always and other networks only when listed', () => {
    const none = new PeerAccess()
    expect(none.allows('127.0.0.1')).toBe(true)
    expect(none.allows('::1')).toBe(true)
    expect(none.allows('::ffff:127.0.0.1')).toBe(true)
    expect(none.allows('10.1.2.3')).toBe(false)
    expect(none.allows('::ffff:10.1.2.3')).toBe(false)
    expect(none.allows(undefined)).toBe(false)
    const some = new PeerAccess(['10.0.0.0/8', 'fd00::/8'])
    expect(some.allows('10.1.2.3')).toBe(true)
    expect(some.allows('::ffff:10.1.2.3')).toBe(true)
    expect(some.allows('fd00::5')).toBe(true)
    expect(some.allows('11.0.0.1')).toBe(false)
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/prefix/)
    expect(() => parseCidr('example.com')).toThrow(/not an IP/)
  })

  it('parses CONNECT targets and names registries as image references do', () => {
    expect(parseConnectTarget('Registry.Example.com:443')).toEqual({ host: 'registry.example.com', port: 443 })
    expect(parseConnectTarget('[::1]:5000')).toEqual({ host: '::1', port: 5000 })
    expect(parseConnectTarget('host')).toBeUndefined()
    expect(parseConnectTarget('a/b:443')).toBeUndefined()
    expect(parseConnectTarget('host:0')).toBeUndefined()
    const hub = upstreamHosts(new Upstreams({ registry: 'https://registry-1.docker.io' }))
    expect(hub.has('docker.io') && hub.has('index.docker.io') && hub.has('registry-1.docker.io')).toBe(true)
    expect(hub.has('')).toBe(false)
    const own = upstreamHosts(new Upstreams({ registry: 'https://registry.example.com:5000/', upstreams: [{ name: 'other.example', url: 'http://10.0.0.5:8080' }] }))
    expect(own.has('registry.example.com:5000')).toBe(true)
    expect(own.has('Other.Example')).toBe(true)
    expect(own.has('registry.example.com')).toBe(false)
    expect(own.has('docker.io')).toBe(false)
    expect(upstreamHosts(new Upstreams({ registry: 'https://r.example.com:443' })).has('r.example.com')).toBe(true)
  })
})
