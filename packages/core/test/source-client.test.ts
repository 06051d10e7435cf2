import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type RequestListener, type Server } from 'node:http'
import { createServer as createTcpServer } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createHttpDispatcher, silentLogger, SourceClient, SourceRefusedError, SourceTooLargeError, SourceUnavailableError,
  type SourceClientInit, type SourceResponse
} from '../src/index.ts'
import type { ResolveAll } from '../src/source/address.ts'
import type { AddressInfo } from 'node:net'

interface TestServer {
  url: string
  port: number
  requests: Array<{ method: string, path: string, headers: IncomingHttpHeaders }>
}

const servers: Server[] = []
const clients: SourceClient[] = []

async function serve (handler: RequestListener): Promise<TestServer> {
  const requests: TestServer['requests'] = []
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers })
    handler(req, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  servers.push(server)
  const { port } = server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}`, port, requests }
}

const redirectTo = (location: string): RequestListener => (_req, res) => { res.writeHead(302, { location }).end() }
const ok = (body = 'hello'): RequestListener => (_req, res) => { res.writeHead(200, { 'content-length': String(body.length) }).end(body) }

function client (init: SourceClientInit, resolve?: ResolveAll, dispatcher?: ReturnType<typeof createHttpDispatcher>): SourceClient {
  const c = new SourceClient({ logger: silentLogger(), ...(resolve != null ? { resolve } : {}), ...(dispatcher != null ? { dispatcher } : {}) }, init)
  clients.push(c)
  return c
}

const text = async (res: SourceResponse): Promise<string> => {
  const chunks: Buffer[] = []
  for await (const c of res.body) {
    chunks.push(c as Buffer)
  }
  return Buffer.concat(chunks).toString()
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map(async c => { await c.stop() }))
  await Promise.all(servers.splice(0).map(async s => { s.closeAllConnections(); s.close(); await once(s, 'close') }))
})

describe('SourceClient: which hosts', () => {
  it('fetches from an allowed upstream, loopback included', async () => {
    const a = await serve(ok('hello'))
    const res = await client({ allow: [a.url] }).fetch(`${a.url}/x`)
    expect(res.statusCode).toBe(200)
    expect(await text(res)).toBe('hello')
    expect(res.url).toBe(`${a.url}/x`)
  })

  it('refuses a private address URL that is not allowed, before any request', async () => {
    const a = await serve(ok())
    const c = client({ allow: ['https://registry.example.com'] })
    await expect(c.fetch(`${a.url}/x`)).rejects.toThrow(SourceRefusedError)
    await expect(c.fetch(`${a.url}/x`)).rejects.toThrow(`allow it with --allow-source 127.0.0.1:${a.port}`)
    await expect(c.fetch('http://169.254.169.254/latest/meta-data/')).rejects.toMatchObject({ code: 'ERR_SOURCE_REFUSED', host: '169.254.169.254' })
    expect(a.requests).toHaveLength(0)
    expect(c.openFetches).toBe(0)
  })

  it('refuses a host that is not on the list, and says so when nothing is', async () => {
    const a = await serve(ok())
    await expect(client({ allow: [a.url] }).fetch(`http://localhost:${a.port}/x`)).rejects.toThrow(`localhost:${a.port} is not an allowed source`)
    await expect(client({ allow: [`127.0.0.1:${a.port + 1}`] }).fetch(`${a.url}/x`)).rejects.toThrow(SourceRefusedError)
    await expect(client({}).fetch(`${a.url}/x`)).rejects.toThrow(/no source is allowed/)
    await expect(client({ allow: [a.url] }).fetch('ftp://127.0.0.1/x')).rejects.toThrow(/only http and https/)
    expect(a.requests).toHaveLength(0)
  })

  it('refuses an allow entry that is not an origin or host', () => {
    expect(() => client({ allow: ['https://registry.example.com/v2/'] })).toThrow(/invalid --allow-source entry/)
  })
})

describe('SourceClient: redirects', () => {
  it('refuses a redirect from an upstream to loopback, by name or literal, unless private redirects are allowed', async () => {
    const b = await serve(ok('from b'))
    for (const target of [`http://localhost:${b.port}/x`, `http://[::ffff:127.0.0.1]:${b.port}/x`, `http://0x7f.1:${b.port}/x`]) {
      const a = await serve(redirectTo(target))
      await expect(client({ allow: [a.url] }).fetch(`${a.url}/blob`)).rejects.toThrow(/refused: .* not a public address \(allow it with --allow-source .* or --allow-private-redirects\)/)
    }
    expect(b.requests).toHaveLength(0)

    const a = await serve(redirectTo(`http://localhost:${b.port}/x`))
    const res = await client({ allow: [a.url], allowPrivateRedirects: true }).fetch(`${a.url}/blob`)
    expect(await text(res)).toBe('from b')
    expect(res.url).toBe(`http://localhost:${b.port}/x`)
  })

  it('follows a redirect to another allowed upstream, private or not', async () => {
    const b = await serve(ok('from b'))
    const a = await serve(redirectTo(`${b.url}/x`))
    expect(await text(await client({ allow: [a.url, `127.0.0.1:${b.port}`] }).fetch(`${a.url}/blob`))).toBe('from b')
  })

  it('does not let a dispatcher with its own redirect handling bypass the checks', async () => {
    const b = await serve(ok())
    const a = await serve(redirectTo(`http://localhost:${b.port}/x`))
    const dispatcher = createHttpDispatcher()
    await expect(client({ allow: [a.url] }, undefined, dispatcher).fetch(`${a.url}/blob`)).rejects.toThrow(SourceRefusedError)
    expect(b.requests).toHaveLength(0)
    await dispatcher.close()
  })

  it('checks addresses again at connect time (DNS rebinding)', async () => {
    const b = await serve(ok())
    const a = await serve(redirectTo(`http://rebind.test:${b.port}/x`))
    let calls = 0
    // public for the check, loopback for the connect
    const resolve: ResolveAll = (_host, _opts, cb) => { cb(null, [{ address: calls++ === 0 ? '93.184.216.34' : '127.0.0.1', family: 4 }]) }
    await expect(client({ allow: [a.url] }, resolve).fetch(`${a.url}/blob`)).rejects.toThrow(SourceRefusedError)
    expect(calls).toBe(2)
    expect(b.requests).toHaveLength(0)
  })

  it('drops credentials on a cross-origin redirect, keeps them on a same-origin one', async () => {
    const b = await serve(ok())
    const a = await serve((req, res) => {
      res.writeHead(302, { location: req.url === '/blob' ? '/moved' : `http://localhost:${b.port}/signed?X-Amz-Signature=abc` }).end()
    })
    const res = await client({ allow: [a.url], allowPrivateRedirects: true }).fetch(`${a.url}/blob`, {
      headers: { authorization: 'Bearer secret', cookie: 'session=1', 'proxy-authorization': 'Basic x', 'private-token': 'glpat-1', accept: '*/*' }
    })
    await res.dump()
    expect(a.requests.map(r => [r.path, r.headers.authorization, r.headers.cookie])).toEqual([['/blob', 'Bearer secret', 'session=1'], ['/moved', 'Bearer secret', 'session=1']])
    expect(b.requests).toHaveLength(1)
    expect(b.requests[0]?.headers).not.toHaveProperty('authorization')
    expect(b.requests[0]?.headers).not.toHaveProperty('cookie')
    // credentials in any header stay with the origin named
    expect(b.requests[0]?.headers).not.toHaveProperty('private-token')
    expect(a.requests[0]?.headers['private-token']).toBe('glpat-1')
    expect(b.requests[0]?.headers.accept).toBe('*/*')
    expect(a.requests[0]?.headers).not.toHaveProperty('proxy-authorization')
  })

  it('never forwards hop-by-hop headers', async () => {
    const a = await serve(ok())
    const res = await client({ allow: [a.url] }).fetch(`${a.url}/x`, { headers: { Host: 'evil.example', 'Transfer-Encoding': 'chunked', Upgrade: 'h2c', 'Proxy-Connection': 'x', 'X-Kept': '1' } })
    await res.dump()
    const seen = a.requests[0]?.headers
    expect(seen?.host).toBe(`127.0.0.1:${a.port}`)
    expect(seen?.['x-kept']).toBe('1')
    expect(seen).not.toHaveProperty('upgrade')
    expect(seen).not.toHaveProperty('proxy-connection')
    expect(seen).not.toHaveProperty('transfer-encoding')
  })

  it('gives up after maxRedirects', async () => {
    const a = await serve(redirectTo('/again'))
    await expect(client({ allow: [a.url], maxRedirects: 3 }).fetch(`${a.url}/x`)).rejects.toThrow(/redirected more than 3 times/)
    expect(a.requests).toHaveLength(4)
  })

  it('answers a HEAD with redirect manual with the redirect itself, following nothing', async () => {
    const b = await serve(ok())
    const a = await serve(redirectTo(`${b.url}/x`))
    const c = client({ allow: [a.url, b.url] })
    const res = await c.fetch(`${a.url}/blob`, { method: 'HEAD', redirect: 'manual', headers: { authorization: 'Bearer t' } })
    // a HEAD holds no slot once answered: the caller need not read or dump anything
    expect(c.openFetches).toBe(0)
    expect(res.statusCode).toBe(302)
    expect(res.headers.location).toBe(`${b.url}/x`)
    expect(a.requests.map(r => r.method)).toEqual(['HEAD'])
    expect(b.requests).toHaveLength(0)
  })
})

describe('SourceClient: sizes and slots', () => {
  it('refuses a source whose Content-Length is over the cap, without reading it', async () => {
    const a = await serve((req, res) => {
      res.writeHead(200, { 'content-length': '1000' })
      if (req.method === 'HEAD') {
        res.end()
      } else {
        res.write(Buffer.alloc(10)) // and never the rest: the client must not wait for it
      }
    })
    const c = client({ allow: [a.url], maxSourceBytes: 100 })
    await expect(c.fetch(`${a.url}/x`)).rejects.toThrow(SourceTooLargeError)
    expect(c.openFetches).toBe(0)
    // a HEAD only asks: it is answered, length and all
    const head = await c.fetch(`${a.url}/x`, { method: 'HEAD' })
    expect(head.statusCode).toBe(200)
    expect(head.headers['content-length']).toBe('1000')
  })

  it('cuts off a body longer than the cap when no length was announced', async () => {
    const a = await serve((_req, res) => { res.writeHead(200); res.write(Buffer.alloc(80)); setTimeout(() => res.end(Buffer.alloc(80)), 20) })
    const res = await client({ allow: [a.url], maxSourceBytes: 100 }).fetch(`${a.url}/x`)
    await expect(text(res)).rejects.toThrow(SourceTooLargeError)
  })

  it('never hands on more than the Content-Length a lying source announced', async () => {
    const raw = createTcpServer(socket => {
      socket.once('data', () => { socket.end(`HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n${'x'.repeat(100)}`) })
    })
    raw.listen(0, '127.0.0.1')
    await once(raw, 'listening')
    const { port } = raw.address() as AddressInfo
    let received = 0
    try {
      const res = await client({ allow: [`127.0.0.1:${port}`] }).fetch(`http://127.0.0.1:${port}/x`)
      for await (const chunk of res.body) {
        received += (chunk as Buffer).byteLength
      }
    } catch {}
    expect(received).toBeLessThanOrEqual(10)
    raw.close()
  })

  it('keeps at most maxConcurrentFetches responses open; a slot frees when a body ends or is destroyed', async () => {
    const pending: Array<() => void> = []
    const a = await serve((_req, res) => { res.writeHead(200); res.write('start'); pending.push(() => res.end()) })
    const c = client({ allow: [a.url], maxConcurrentFetches: 2 })
    const first = await c.fetch(`${a.url}/1`)
    const second = await c.fetch(`${a.url}/2`)
    let thirdDone = false
    const third = c.fetch(`${a.url}/3`).then(r => { thirdDone = true; return r })
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(thirdDone).toBe(false)
    expect(a.requests).toHaveLength(2)
    expect(c.openFetches).toBe(2)

    first.body.destroy()
    const res3 = await third
    expect(a.requests).toHaveLength(3)

    // a waiter bounded by its own signal gives up, taking no slot
    await expect(c.fetch(`${a.url}/4`, { signal: AbortSignal.timeout(50) })).rejects.toThrow()
    expect(a.requests).toHaveLength(3)

    pending.forEach(end => { end() })
    await text(second)
    await text(res3)
    await new Promise(resolve => setImmediate(resolve))
    expect(c.openFetches).toBe(0)
  })

  it('times out a source that does not answer', async () => {
    const a = await serve(() => {})
    const c = client({ allow: [a.url] })
    await expect(c.fetch(`${a.url}/x`, { timeout: 100 })).rejects.toThrow(SourceUnavailableError)
    expect(c.openFetches).toBe(0)
  })
})
