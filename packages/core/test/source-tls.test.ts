import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { InvalidConfigError, silentLogger, SourceClient, SourceUnavailableError, type SourceClientInit } from '../src/index.ts'
import type { AddressInfo } from 'node:net'

const fixture = (name: string): string => readFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url), 'utf8')

describe('SourceClient TLS settings per host', () => {
  let server: Server
  let port: number
  let url: string
  const ca = fixture('ca.crt')

  beforeAll(async () => {
    // a source whose certificate a private CA signed: the system's CAs do not know it
    server = createServer({ cert: fixture('server.crt'), key: fixture('server.key') }, (_req, res) => { res.writeHead(200, { 'content-length': '2' }).end('ok') })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    port = (server.address() as AddressInfo).port
    url = `https://127.0.0.1:${port}/v2/`
  })

  afterAll(async () => {
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  })

  async function fetchWith (init: Omit<SourceClientInit, 'allow'>): Promise<number> {
    const client = new SourceClient({ logger: silentLogger() }, { allow: [`https://127.0.0.1:${port}`], ...init })
    try {
      const res = await client.fetch(url, { signal: AbortSignal.timeout(10_000) })
      await res.dump()
      return res.statusCode
    } finally {
      await client.stop()
    }
  }

  it('checks a host against the CA given for it, host:port or host alone', async () => {
    expect(await fetchWith({ tls: [{ host: `127.0.0.1:${port}`, ca }] })).toBe(200)
    expect(await fetchWith({ tls: [{ host: '127.0.0.1', ca }] })).toBe(200)
  })

  it('refuses the certificate without that CA: with the system CAs, or with the CA given for another host or port', async () => {
    await expect(fetchWith({})).rejects.toThrow(SourceUnavailableError)
    await expect(fetchWith({ tls: [{ host: `127.0.0.1:${port + 1}`, ca }] })).rejects.toThrow(/certificate/)
    await expect(fetchWith({ tls: [{ host: 'localhost', ca }] })).rejects.toThrow(/certificate/)
  })

  it('skips the check only for a host configured so', async () => {
    expect(await fetchWith({ tls: [{ host: `127.0.0.1:${port}`, insecureSkipVerify: true }] })).toBe(200)
    await expect(fetchWith({ tls: [{ host: 'other.example', insecureSkipVerify: true }] })).rejects.toThrow(/certificate/)
  })

  it('rejects a bad host or a host given twice', () => {
    expect(() => new SourceClient({ logger: silentLogger() }, { tls: [{ host: 'https://x.example/' }] })).toThrow(InvalidConfigError)
    expect(() => new SourceClient({ logger: silentLogger() }, { tls: [{ host: 'x.example:5000', ca }, { host: 'X.example:5000', insecureSkipVerify: true }] }))
      .toThrow(/TLS settings for X\.example:5000 given twice/)
  })
})
