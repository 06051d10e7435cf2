import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer, type Server } from 'node:https'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseImageReference, RegistryAuthError, RegistryClient, silentLogger, SourceClient } from '../src/index.ts'
import type { AddressInfo } from 'node:net'

const fixture = (name: string): string => readFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url), 'utf8')

const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { digest: `sha256:${'a'.repeat(64)}`, size: 2 }, layers: [] }))
const BOT = 'Basic ' + Buffer.from('bot:s3cret').toString('base64')

describe('RegistryClient token realms', () => {
  // a registry on a private CA's certificate whose token realm is on the same host, as
  // a self-hosted registry with token auth is: /realm-path picks what the challenge names
  let server: Server
  let base: string
  let plain: HttpServer
  let plainUrl: string
  let realm = ''
  const tokenRequests: string[] = []

  beforeAll(async () => {
    plain = createHttpServer((req, res) => {
      tokenRequests.push(`plain ${req.url ?? ''} ${req.headers.authorization ?? ''}`)
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"plain-token"}')
    })
    plain.listen(0, '127.0.0.1')
    await once(plain, 'listening')
    plainUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`
    server = createServer({ cert: fixture('server.crt'), key: fixture('server.key') }, (req, res) => {
      const url = new URL(req.url ?? '/', base)
      if (url.pathname === '/token') {
        tokenRequests.push(`${url.search} ${req.headers.authorization ?? ''}`)
        if (req.headers.authorization !== BOT) {
          res.writeHead(401, { 'content-type': 'text/plain' }).end('internal detail: user table at 10.9.8.7 says no')
          return
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"token":"good-token"}')
        return
      }
      if (req.headers.authorization !== 'Bearer good-token') {
        res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="test"` }).end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest)
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterAll(async () => {
    server.closeAllConnections()
    plain.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
    await new Promise(resolve => plain.close(resolve))
  })

  async function withClient<T> (fn: (client: RegistryClient) => Promise<T>): Promise<T> {
    const source = new SourceClient({ logger: silentLogger() }, { allow: [base], tls: [{ host: '127.0.0.1', ca: fixture('ca.crt') }] })
    const client = new RegistryClient({ source })
    try {
      return await fn(client)
    } finally {
      await client.stop()
      await source.stop()
    }
  }

  const ref = parseImageReference('registry.test/team/app:1')

  it("asks a realm on the registry's private-CA host with the registry's TLS settings", async () => {
    realm = `${base}/token`
    const resolved = await withClient(async c => c.resolve(base, ref, { credentials: { username: 'bot', password: 's3cret' }, signal: AbortSignal.timeout(10_000) }))
    expect(resolved.digest).toBe(`sha256:${createHash('sha256').update(manifest).digest('hex')}`)
    expect(resolved.authorization).toBe('Bearer good-token')
  })

  it('never sends credentials to a plain-http realm of an https registry', async () => {
    realm = `${plainUrl}/token`
    const before = tokenRequests.length
    const err = await withClient(async c => c.resolve(base, ref, { credentials: { username: 'bot', password: 's3cret' }, signal: AbortSignal.timeout(10_000) })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RegistryAuthError)
    expect((err as Error).message).toMatch(/https only/)
    expect(tokenRequests.slice(before).some(r => r.startsWith('plain'))).toBe(false)
  })

  it("puts the realm's status, never its body, into the error", async () => {
    realm = `${base}/token`
    const err = await withClient(async c => c.resolve(base, ref, { credentials: { username: 'bot', password: 'wrong' }, signal: AbortSignal.timeout(10_000) })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RegistryAuthError)
    expect((err as Error).message).toMatch(/answered 401/)
    expect((err as Error).message).not.toMatch(/internal detail|10\.9\.8\.7/)
  })
})
