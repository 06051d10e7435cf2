import { Readable } from 'node:stream'
import { createMetricsRegistry, silentLogger } from '@shoal/core'
import { describe, expect, it } from 'vitest'
import { DfgetMetrics, type SourceHead } from '../src/index.ts'
import { AuthzCache, authzKey } from '../src/mirror/authz-cache.ts'
import { BlobAuthorizer } from '../src/mirror/blob-authorizer.ts'
import { parseSamples, sample } from '../../../test/harness/metrics.ts'

const URL_A = 'http://registry/v2/team/app/blobs/sha256:' + 'a'.repeat(64)
const URL_B = 'http://registry/v2/team/app/blobs/sha256:' + 'b'.repeat(64)
const URL_OTHER_REPO = 'http://registry/v2/other/app/blobs/sha256:' + 'a'.repeat(64)

describe('authzKey', () => {
  it('tells credentials, repositories and digests apart, and never holds the credentials', () => {
    const alice = { authorization: 'Basic YWxpY2U6c2VjcmV0' }
    const keys = new Set([
      authzKey(alice, URL_A),
      authzKey(alice, URL_B),
      authzKey(alice, URL_OTHER_REPO),
      authzKey({ authorization: 'Basic Ym9iOnNlY3JldA==' }, URL_A),
      authzKey({}, URL_A)
    ])
    expect(keys.size).toBe(5)
    expect([...keys].join()).not.toContain('YWxpY2U6c2VjcmV0')
    // header names are case-insensitive and their order does not matter
    expect(authzKey({ Authorization: 'x', 'x-a': '1' }, URL_A)).toBe(authzKey({ 'x-a': '1', authorization: 'x' }, URL_A))
  })
})

describe('AuthzCache', () => {
  it('keeps an allowed answer for its ttl, then forgets it', () => {
    let now = 1_000
    const cache = new AuthzCache({ ttl: 60_000 }, () => now)
    expect(cache.has('k')).toBe(false)
    cache.allow('k')
    now += 59_999
    expect(cache.has('k')).toBe(true)
    now += 1
    expect(cache.has('k')).toBe(false)
    expect(cache.size).toBe(0)
  })

  it('keeps nothing when the ttl is 0', () => {
    const cache = new AuthzCache({ ttl: 0 })
    cache.allow('k')
    expect(cache.has('k')).toBe(false)
    expect(cache.size).toBe(0)
  })

  it('is bounded, dropping the least recently used first', () => {
    const cache = new AuthzCache({ ttl: 60_000, maxEntries: 3 })
    cache.allow('a')
    cache.allow('b')
    cache.allow('c')
    expect(cache.has('a')).toBe(true) // a is now the most recently used
    cache.allow('d')
    expect(cache.size).toBe(3)
    expect(cache.has('b')).toBe(false)
    expect(cache.has('a')).toBe(true)
    expect(cache.has('c')).toBe(true)
    expect(cache.has('d')).toBe(true)
    for (let i = 0; i < 100; i++) {
      cache.allow(`k${i}`)
    }
    expect(cache.size).toBe(3)
  })
})

describe('BlobAuthorizer', () => {
  const answer = (statusCode: number, headers: Record<string, string> = {}, body = ''): ReturnType<SourceHead> =>
    Promise.resolve({ statusCode, headers, body: Readable.from(body === '' ? [] : [Buffer.from(body)]) })

  function setup (head: SourceHead, init: ConstructorParameters<typeof BlobAuthorizer>[1] = {}): { authorizer: BlobAuthorizer, calls: Array<{ url: string, headers: Record<string, string> }>, checks: (result: string) => Promise<number> } {
    const registry = createMetricsRegistry()
    const metrics = new DfgetMetrics(registry)
    const calls: Array<{ url: string, headers: Record<string, string> }> = []
    const authorizer = new BlobAuthorizer({
      sourceHead: async (url, options) => { calls.push({ url, headers: options.headers }); return head(url, options) },
      metrics,
      logger: silentLogger()
    }, init)
    return { authorizer, calls, checks: async (result) => sample(parseSamples(await registry.metrics()), 'shoal_dfget_authz_checks_total', { result }) }
  }

  /** A fresh signal per call: one made at load time would time out under a slow run. */
  const live = (): AbortSignal => AbortSignal.timeout(10_000)

  it('allows on 2xx and 3xx, asks with the client credentials, and reuses the answer', async () => {
    const { authorizer, calls, checks } = setup(async (url) => answer(url === URL_A ? 200 : 307, { location: 'https://storage/x' }))
    const alice = { authorization: 'Bearer alice' }
    expect(await authorizer.check(URL_A, alice, live())).toBeUndefined()
    expect(await authorizer.check(URL_B, alice, live())).toBeUndefined()
    expect(await authorizer.check(URL_A, alice, live())).toBeUndefined()
    expect(calls).toEqual([{ url: URL_A, headers: alice }, { url: URL_B, headers: alice }])
    expect(await checks('allowed')).toBe(2)
    expect(await checks('cached')).toBe(1)
    // another client is asked about on its own
    expect(await authorizer.check(URL_A, {}, live())).toBeUndefined()
    expect(calls).toHaveLength(3)
  })

  it('passes a denial back as the upstream gave it, and never caches it', async () => {
    const challenge = 'Bearer realm="http://auth/token",service="registry",scope="repository:team/app:pull"'
    const { authorizer, calls, checks } = setup(async () => answer(401, { 'www-authenticate': challenge, 'docker-distribution-api-version': 'registry/2.0', 'x-secret': 'no' }))
    for (let i = 0; i < 2; i++) {
      const denial = await authorizer.check(URL_A, {}, live())
      expect(denial?.status).toBe(401)
      expect(denial?.headers).toEqual({ 'www-authenticate': challenge, 'docker-distribution-api-version': 'registry/2.0', 'content-type': 'application/json; charset=utf-8' })
      expect(JSON.parse(denial?.body.toString() ?? '')).toEqual({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required', detail: null }] })
    }
    expect(calls).toHaveLength(2)
    expect(await checks('denied')).toBe(2)
  })

  it('keeps an error body the upstream sent, bounded', async () => {
    const { authorizer } = setup(async () => answer(403, { 'content-type': 'application/json' }, 'x'.repeat(100)), { maxErrorBody: 10 })
    const denial = await authorizer.check(URL_A, {}, live())
    expect(denial?.status).toBe(403)
    expect(denial?.body.toString()).toBe('x'.repeat(10))
  })

  it('shares one question among clients asking the same at once, even when the first goes away', async () => {
    let release: (() => void) | undefined
    const { authorizer, calls, checks } = setup(async () => {
      await new Promise<void>(resolve => { release = resolve })
      return answer(200)
    })
    const first = new AbortController()
    const settled = Promise.allSettled([authorizer.check(URL_A, {}, first.signal), authorizer.check(URL_A, {}, live()), authorizer.check(URL_A, {}, live())])
    first.abort(new Error('client went away'))
    await new Promise(resolve => setTimeout(resolve, 10))
    release?.()
    const answers = await settled
    expect(answers.map(a => a.status)).toEqual(['rejected', 'fulfilled', 'fulfilled'])
    expect(calls).toHaveLength(1)
    expect(await checks('allowed')).toBe(1)
    expect(await checks('cached')).toBe(2)
  })

  it('fails with a stable code when the upstream cannot be asked, or takes too long', async () => {
    const { authorizer, checks } = setup(async () => { throw new Error('connect ECONNREFUSED') })
    await expect(authorizer.check(URL_A, {}, live())).rejects.toMatchObject({ code: 'ERR_AUTHZ_UNAVAILABLE' })
    const slow = setup(async () => new Promise(() => {}), { timeout: 50 })
    await expect(slow.authorizer.check(URL_A, {}, live())).rejects.toMatchObject({ code: 'ERR_AUTHZ_UNAVAILABLE' })
    expect(await checks('error')).toBe(1)
  })
})
