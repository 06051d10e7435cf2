import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { createRouter, sendJson, silentLogger, startHttpServer, type HttpServer, type HttpServerOptions } from '../src/index.ts'
import { createHostGuard, hostOf } from '../src/http/host-guard.ts'

describe('Host allow list', () => {
  it('parses Host headers', () => {
    expect(hostOf('LocalHost:8080')).toBe('localhost')
    expect(hostOf('[::1]:65001')).toBe('::1')
    expect(hostOf('example.com.')).toBe('example.com')
    for (const bad of [undefined, '', '::1', '[::1', '[::1]x', ':80']) {
      expect(hostOf(bad), String(bad)).toBeUndefined()
    }
  })

  it('allows loopback, a specific listen address and configured names only', () => {
    const any = createHostGuard({ listenHost: '0.0.0.0', allowed: ['Mirror.Internal', '10.0.0.7', '::1'] })
    for (const ok of ['localhost', 'localhost:1', '127.0.0.1:65001', '[::1]:65001', 'mirror.internal:65001', '10.0.0.7']) {
      expect(any(ok), ok).toBe(true)
    }
    for (const no of [undefined, '0.0.0.0', '127.0.0.2', 'localhost.evil.example', 'evil.example', 'mirror.internal.evil']) {
      expect(any(no), String(no)).toBe(false)
    }
    expect(createHostGuard({ listenHost: '192.168.1.5' })('192.168.1.5:65001')).toBe(true)
    expect(createHostGuard({ listenHost: 'fd00::5' })('[fd00::5]:65001')).toBe(true)
    expect(createHostGuard({ listenHost: '::' })('[::]:65001')).toBe(false)
  })
})

describe('startHttpServer bounds', () => {
  let server: HttpServer | undefined
  const sockets: Socket[] = []

  afterEach(async () => {
    for (const s of sockets.splice(0)) {
      s.destroy()
    }
    await server?.close()
    server = undefined
  })

  async function start (options: HttpServerOptions): Promise<HttpServer> {
    server = await startHttpServer({ host: '127.0.0.1', port: 0 }, createRouter([
      { methods: ['GET'], pattern: /^\/ok$/, handler: async ({ res }) => { sendJson(res, 200, { ok: true }) } },
      {
        methods: ['GET'],
        pattern: /^\/big$/,
        handler: async ({ res }) => {
          // far more than socket buffers hold: a client that does not read stalls it
          res.writeHead(200, { 'content-type': 'application/octet-stream' })
          const chunk = Buffer.alloc(1024 * 1024)
          for (let i = 0; i < 256 && !res.destroyed; i++) {
            if (!res.write(chunk)) {
              await Promise.race([once(res, 'drain'), once(res, 'close')])
            }
          }
          res.end()
        }
      }
    ], { log: silentLogger().forComponent('test') }), options)
    return server
  }

  async function rawRequest (s: HttpServer, head: string): Promise<Socket> {
    const socket = connect(s.address.port, '127.0.0.1')
    sockets.push(socket)
    await once(socket, 'connect')
    socket.write(head)
    return socket
  }

  it('cuts a client that stops reading a response', async () => {
    const s = await start({ idleTimeout: 300 })
    const closed: number[] = []
    s.server.on('connection', (c: Socket) => { c.once('close', () => closed.push(Date.now())) })
    const socket = await rawRequest(s, 'GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n')
    socket.pause()
    const started = Date.now()
    for (let i = 0; i < 50 && closed.length === 0; i++) {
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    expect(closed).toHaveLength(1)
    expect(closed[0]! - started).toBeGreaterThanOrEqual(250)
  })

  it('bounds connections at once', async () => {
    const s = await start({ maxConnections: 2 })
    const first = await rawRequest(s, '')
    const second = await rawRequest(s, '')
    const third = await rawRequest(s, 'GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n')
    let answer = ''
    third.on('data', (d: Buffer) => { answer += d.toString() })
    const closed = await Promise.race([once(third, 'close').then(() => true), new Promise(resolve => setTimeout(resolve, 5_000, false))])
    expect(closed).toBe(true)
    expect(answer).toBe('')
    first.destroy()
    second.destroy()
    await new Promise(resolve => setTimeout(resolve, 100))
    const res = await request(`${s.url}/ok`, { signal: AbortSignal.timeout(5_000) })
    expect(res.statusCode).toBe(200)
    await res.body.dump()
  })

  it('refuses a request head over maxHeaderSize', async () => {
    const s = await start({ maxHeaderSize: 4096 })
    const res = await request(`${s.url}/ok`, { headers: { 'x-pad': 'x'.repeat(8192) }, signal: AbortSignal.timeout(5_000) })
    expect(res.statusCode).toBe(431)
    await res.body.dump()
    const fine = await request(`${s.url}/ok`, { headers: { 'x-pad': 'x'.repeat(1024) }, signal: AbortSignal.timeout(5_000) })
    expect(fine.statusCode).toBe(200)
    await fine.body.dump()
  })

  it('applies an allow list with a hint, and answers any Host without one', async () => {
    const s = await start({ allowedHosts: [], allowedHostsHint: 'use --allowed-host' })
    const refused = await request(`${s.url}/ok`, { headers: { host: 'rebound.example' }, signal: AbortSignal.timeout(5_000) })
    expect(refused.statusCode).toBe(403)
    expect(JSON.stringify(await refused.body.json())).toContain('use --allowed-host')
    await s.close()
    const open = await start({})
    const res = await request(`${open.url}/ok`, { headers: { host: 'rebound.example' }, signal: AbortSignal.timeout(5_000) })
    expect(res.statusCode).toBe(200)
    await res.body.dump()
  })
})
