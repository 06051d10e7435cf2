import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { SourceClient, silentLogger, InvalidConfigError } from '@shoal/core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { UnknownUpstreamError, UpstreamAuthError } from '../src/errors.ts'
import { parseChallenge, pullScope, UpstreamAuth } from '../src/mirror/upstream-auth.ts'
import { Upstreams } from '../src/mirror/upstreams.ts'
import type { AddressInfo } from 'node:net'

const stops: Upstreams[] = []
function upstreams (...args: ConstructorParameters<typeof Upstreams>): Upstreams {
  const u = new Upstreams(...args)
  stops.push(u)
  return u
}

afterEach(async () => {
  await Promise.all(stops.splice(0).map(async u => { await u.stop() }))
})

describe('Upstreams', () => {
  it('sends requests without ?ns= to --registry, and each named registry to its own URL', () => {
    const u = upstreams({
      registry: 'https://registry-1.docker.io',
      upstreams: [
        { name: 'registry.example.com:5000', url: 'https://10.0.0.5:5000/' },
        { name: 'Quay.IO', url: 'https://quay.io' }
      ]
    })
    expect(u.resolve(undefined).url).toBe('https://registry-1.docker.io')
    expect(u.resolve('').name).toBe('registry-1.docker.io')
    expect(u.resolve('registry.example.com:5000').url).toBe('https://10.0.0.5:5000')
    expect(u.resolve('quay.io').name).toBe('quay.io')
    expect(u.resolve('QUAY.io').url).toBe('https://quay.io')
    expect(u.origins().sort()).toEqual(['https://10.0.0.5:5000', 'https://quay.io', 'https://registry-1.docker.io'])
  })

  it('knows Docker Hub by all its names, and one configured under any of them replaces --registry', () => {
    const plain = upstreams({ registry: 'https://registry-1.docker.io' })
    for (const ns of ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'Docker.IO']) {
      expect(plain.resolve(ns), ns).toBe(plain.default)
    }
    const withCredentials = upstreams({
      registry: 'https://registry-1.docker.io',
      upstreams: [{ name: 'docker.io', url: 'https://registry-1.docker.io', username: 'bot', password: 'pw' }]
    })
    expect(withCredentials.resolve(undefined).credentials).toEqual({ username: 'bot', password: 'pw' })
    expect(withCredentials.resolve('index.docker.io').credentials).toEqual({ username: 'bot', password: 'pw' })
    expect(withCredentials.list()).toHaveLength(1)
    expect(() => upstreams({ registry: 'http://r:5000', upstreams: [{ name: 'docker.io', url: 'https://a' }, { name: 'index.docker.io', url: 'https://b' }] }))
      .toThrow(/index\.docker\.io is configured twice \(docker\.io, index\.docker\.io and registry-1\.docker\.io are one registry\)/)
  })

  it('puts one-component Docker Hub names under library/, other registries\' names unchanged, and drops ?ns=', () => {
    const u = upstreams({ registry: 'http://127.0.0.1:5000', upstreams: [{ name: 'docker.io', url: 'https://registry-1.docker.io' }] })
    const hub = u.resolve('docker.io')
    const local = u.resolve(undefined)
    const q = new URLSearchParams({ ns: 'docker.io', n: '10' })
    expect(u.target(hub, '/v2/alpine/manifests/latest', q)).toBe('https://registry-1.docker.io/v2/library/alpine/manifests/latest?n=10')
    expect(u.target(hub, '/v2/library/alpine/blobs/sha256:ab', new URLSearchParams({ ns: 'docker.io' }))).toBe('https://registry-1.docker.io/v2/library/alpine/blobs/sha256:ab')
    expect(u.target(hub, '/v2/team/app/tags/list')).toBe('https://registry-1.docker.io/v2/team/app/tags/list')
    expect(u.target(hub, '/v2/')).toBe('https://registry-1.docker.io/v2/')
    expect(u.target(local, '/v2/alpine/manifests/latest', new URLSearchParams({ ns: '127.0.0.1:5000' }))).toBe('http://127.0.0.1:5000/v2/alpine/manifests/latest')
    expect(u.repository(hub, 'alpine')).toBe('library/alpine')
    expect(u.repository(local, 'alpine')).toBe('alpine')
  })

  it('refuses a name that is not configured, naming it, instead of answering from another registry', () => {
    const u = upstreams({ registry: 'http://127.0.0.1:5000', upstreams: [{ name: 'a.example', url: 'https://a.example' }] })
    let err: unknown
    try {
      u.resolve('b.example')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(UnknownUpstreamError)
    expect((err as UnknownUpstreamError).code).toBe('UPSTREAM_UNKNOWN')
    expect((err as UnknownUpstreamError).host).toBe('b.example')
    expect((err as Error).message).toMatch(/"b\.example" is not an upstream of this mirror \(configured: 127\.0\.0\.1:5000, a\.example\)/)
    // Docker Hub is an upstream only when configured
    expect(() => u.resolve('docker.io')).toThrow(UnknownUpstreamError)
    expect(() => u.resolve('127.0.0.1:5001')).toThrow(UnknownUpstreamError)
  })

  it('rejects bad configuration, naming the field', () => {
    expect(() => upstreams({ registry: 'http://r', upstreams: [{ name: 'bad name', url: 'https://x' }] })).toThrow(/upstreams\.0\.name: "bad name" is not a registry host/)
    expect(() => upstreams({ registry: 'http://r', upstreams: [{ name: 'x', url: 'ftp://x' }] })).toThrow(/upstreams\.0\.url: .* must be an http/)
    expect(() => upstreams({ registry: 'http://r', upstreams: [{ name: 'x', url: 'https://u:p@x' }] })).toThrow(InvalidConfigError)
    expect(() => upstreams({ registry: 'http://r', upstreams: [{ name: 'x', url: 'https://x', username: 'u' }] })).toThrow(/upstreams\.0: give both username and password/)
  })

  it('hands the source client the TLS settings of the upstreams that have their own', () => {
    const u = upstreams({
      registry: 'https://registry-1.docker.io',
      upstreams: [
        { name: 'a.example:5000', url: 'https://a.example:5000', ca: '-----BEGIN CERTIFICATE-----\n' },
        { name: 'b.example', url: 'https://b.example', insecureSkipVerify: true },
        { name: 'c.example', url: 'https://c.example' }
      ]
    })
    expect(u.tls()).toEqual([
      { host: 'a.example:5000', ca: '-----BEGIN CERTIFICATE-----\n', insecureSkipVerify: false },
      { host: 'b.example', insecureSkipVerify: true }
    ])
  })
})

describe('parseChallenge', () => {
  it('reads Basic and Bearer challenges', () => {
    expect(parseChallenge('Basic realm="shoal-test"')).toEqual({ scheme: 'basic' })
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"'))
      .toEqual({ scheme: 'bearer', realm: 'https://auth.docker.io/token', service: 'registry.docker.io' })
    expect(parseChallenge('bearer realm=https://t/token')).toEqual({ scheme: 'bearer', realm: 'https://t/token' })
    expect(parseChallenge('Bearer service="x"')).toBeUndefined()
    expect(parseChallenge('Negotiate abc')).toBeUndefined()
    expect(parseChallenge(undefined)).toBeUndefined()
  })
})

describe('UpstreamAuth', () => {
  let server: Server
  let base: string
  let challenge = 'bearer'
  let expiresIn: number | undefined = 300
  const tokenRequests: URLSearchParams[] = []
  let probes = 0
  const good = `Basic ${Buffer.from('bot:s3cret').toString('base64')}`

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      const url = new URL(req.url ?? '/', base)
      if (url.pathname === '/v2/') {
        probes++
        res.writeHead(401, { 'www-authenticate': challenge === 'bearer' ? `Bearer realm="${base}/token",service="test-registry"` : 'Basic realm="test"' }).end()
        return
      }
      if (url.pathname === '/token') {
        tokenRequests.push(url.searchParams)
        if (req.headers.authorization !== good) {
          res.writeHead(401).end('{}')
          return
        }
        res.writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ token: `token-${tokenRequests.length}`, ...(expiresIn != null ? { expires_in: expiresIn } : {}) }))
        return
      }
      res.writeHead(404).end()
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterAll(async () => {
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  })

  async function setup (password = 's3cret'): Promise<{ auth: UpstreamAuth, u: Upstreams, clock: { now: number }, source: SourceClient }> {
    const u = upstreams({ registry: base, upstreams: [{ name: new URL(base).host, url: base, username: 'bot', password }] })
    const source = new SourceClient({ logger: silentLogger() }, { allow: u.origins() })
    const clock = { now: 1_000_000 }
    const auth = new UpstreamAuth({ source, logger: silentLogger(), now: () => clock.now }, { expiryMargin: 10_000 })
    return { auth, u, clock, source }
  }

  it('gets a Bearer token per repository with basic auth to the realm, and reuses it until shortly before it expires', async () => {
    challenge = 'bearer'
    expiresIn = 300
    tokenRequests.length = 0
    probes = 0
    const { auth, u, clock, source } = await setup()
    const up = u.default
    const first = await auth.authorization(up, pullScope('team/app'))
    expect(first).toBe('Bearer token-1')
    expect(tokenRequests[0]?.get('scope')).toBe('repository:team/app:pull')
    expect(tokenRequests[0]?.get('service')).toBe('test-registry')
    // concurrent askers share one request; the cached token is reused
    const again = await Promise.all([auth.authorization(up, pullScope('team/app')), auth.authorization(up, pullScope('team/app'))])
    expect(again).toEqual([first, first])
    expect(tokenRequests).toHaveLength(1)
    // another repository: another token, the challenge learnt once
    expect(await auth.authorization(up, pullScope('team/other'))).toBe('Bearer token-2')
    expect(probes).toBe(1)

    // 300 s lifetime, 10 s margin: still good at 289.999 s, renewed at 290 s
    clock.now += 289_999
    expect(await auth.authorization(up, pullScope('team/app'))).toBe(first)
    clock.now += 1
    expect(await auth.authorization(up, pullScope('team/app'))).toBe('Bearer token-3')
    expect(tokenRequests).toHaveLength(3)

    // after a refusal everything is learnt afresh
    auth.invalidate(up)
    expect(await auth.authorization(up, pullScope('team/app'))).toBe('Bearer token-4')
    expect(probes).toBe(2)
    await source.stop()
  })

  it('takes the spec default of 60 s for a token without expires_in', async () => {
    challenge = 'bearer'
    expiresIn = undefined
    tokenRequests.length = 0
    const { auth, u, clock, source } = await setup()
    expect(await auth.authorization(u.default, pullScope('a'))).toBe('Bearer token-1')
    clock.now += 49_999
    expect(await auth.authorization(u.default, pullScope('a'))).toBe('Bearer token-1')
    clock.now += 1
    expect(await auth.authorization(u.default, pullScope('a'))).toBe('Bearer token-2')
    await source.stop()
  })

  it('answers a Basic challenge with the credentials, and says why when the realm refuses them', async () => {
    challenge = 'basic'
    const basic = await setup()
    expect(await basic.auth.authorization(basic.u.default, pullScope('a'))).toBe(good)
    await basic.source.stop()

    challenge = 'bearer'
    const wrong = await setup('wrong')
    await expect(wrong.auth.authorization(wrong.u.default, pullScope('a'))).rejects.toThrow(UpstreamAuthError)
    await expect(wrong.auth.authorization(wrong.u.default, pullScope('a'))).rejects.toThrow(/token request to http:\/\/127\.0\.0\.1:\d+ for repository:a:pull answered 401/)
    await wrong.source.stop()
  })

  it('sends nothing for an upstream without credentials', async () => {
    const u = upstreams({ registry: base })
    const auth = new UpstreamAuth({ source: { fetch: async () => { throw new Error('must not be asked') } }, logger: silentLogger() })
    expect(await auth.authorization(u.default, pullScope('a'))).toBeUndefined()
  })
})
