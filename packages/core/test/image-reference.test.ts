import { afterEach, describe, expect, it, vi } from 'vitest'
import { BlobAuthorization, TOKEN_REUSE_MS, formatImageReference, InvalidImageReferenceError, parseImageReference, PullJobs, silentLogger, TooManyJobsError } from '../src/index.ts'

const digest = `sha256:${'a'.repeat(64)}`

describe('parseImageReference', () => {
  it.each([
    ['alpine', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' }],
    ['alpine:3.20', { registry: 'docker.io', repository: 'library/alpine', tag: '3.20' }],
    ['bitnami/redis', { registry: 'docker.io', repository: 'bitnami/redis', tag: 'latest' }],
    ['docker.io/alpine', { registry: 'docker.io', repository: 'library/alpine', tag: 'latest' }],
    ['index.docker.io/library/alpine:1', { registry: 'docker.io', repository: 'library/alpine', tag: '1' }],
    ['registry.example.com:5000/team/app:1.2', { registry: 'registry.example.com:5000', repository: 'team/app', tag: '1.2' }],
    ['localhost/app', { registry: 'localhost', repository: 'app', tag: 'latest' }],
    ['127.0.0.1:5000/library/x', { registry: '127.0.0.1:5000', repository: 'library/x', tag: 'latest' }],
    [`ghcr.io/org/app@${digest}`, { registry: 'ghcr.io', repository: 'org/app', digest }],
    [`ghcr.io/org/app:v1@${digest}`, { registry: 'ghcr.io', repository: 'org/app', tag: 'v1', digest }]
  ])('%s', (input, expected) => {
    expect(parseImageReference(input)).toEqual(expected)
  })

  it.each([
    ['', /1 to 1024/],
    ['Alpine', /repository "library\/Alpine"/],
    ['app@sha256:abc', /is not a digest/],
    ['app:bad tag!', /tag/],
    ['reg.example.com/', /repository ""/],
    ['app with spaces', /repository/],
    ['x'.repeat(2000), /1 to 1024/]
  ])('refuses bad reference #%#, naming the problem', (input, message) => {
    expect(() => parseImageReference(input)).toThrow(InvalidImageReferenceError)
    expect(() => parseImageReference(input)).toThrow(message)
  })

  it('writes a reference out in full', () => {
    expect(formatImageReference(parseImageReference('alpine'))).toBe('docker.io/library/alpine:latest')
  })
})

describe('PullJobs', () => {
  it('reports per-layer progress and fails with the first failed layer\'s reason', async () => {
    const jobs = new PullJobs({ log: silentLogger().forComponent('test') })
    const created = jobs.create({
      image: 'x',
      resolve: async () => ({ layers: [{ url: 'http://a/1', size: 10 }, { url: 'http://a/2', size: 5 }] }),
      fetch: async (layer, bySource) => {
        if (layer.url.endsWith('/2')) {
          throw new Error('source answered 404')
        }
        layer.completedBytes = 10
        bySource.peer += 10
      }
    })
    // bounded: the job has nothing to wait for
    for (let i = 0; i < 100 && jobs.get(created.id)?.state === 'running'; i++) {
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    const job = jobs.get(created.id)!
    expect(job.state).toBe('failed')
    expect(job.error).toMatch(/1 of 2 layers failed; first: http:\/\/a\/2: source answered 404/)
    expect(job.layers.map(l => l.state)).toEqual(['succeeded', 'failed'])
    expect(job.totalBytes).toBe(15)
    expect(job.completedBytes).toBe(10)
    expect(job.bytesBySource).toEqual({ local: 0, peer: 10, supernode: 0, origin: 0 })
    expect(job.finishedAt).toBeDefined()
  })

  it('keeps at most maxJobs: finished ones make room, running ones refuse more', async () => {
    const jobs = new PullJobs({ log: silentLogger().forComponent('test') }, { maxJobs: 2 })
    const done = { resolve: async () => ({ layers: [] }), fetch: async () => {} }
    const first = jobs.create(done)
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(jobs.get(first.id)?.state).toBe('succeeded')
    let release!: () => void
    const held = new Promise<void>(resolve => { release = resolve })
    const hanging = { resolve: async () => ({ layers: [{ url: 'http://a/1', size: 1 }] }), fetch: async () => { await held } }
    jobs.create(hanging)
    jobs.create(hanging)
    // the finished one made room
    expect(jobs.get(first.id)).toBeUndefined()
    expect(() => jobs.create(hanging)).toThrow(TooManyJobsError)
    expect(jobs.list()).toHaveLength(2)
    release()
    await jobs.stop()
  })
})

describe('BlobAuthorization', () => {
  afterEach(() => { vi.useRealTimers() })
  const signal = new AbortController().signal

  it('asks for a new token once the one it has is older than TOKEN_REUSE_MS, once for concurrent layers', async () => {
    vi.useFakeTimers()
    let refreshes = 0
    const auth = new BlobAuthorization('Bearer first', async () => { refreshes++; return `Bearer fresh-${refreshes}` })
    expect(await auth.headers(signal)).toEqual({ authorization: 'Bearer first' })
    vi.advanceTimersByTime(TOKEN_REUSE_MS - 1000)
    expect(await auth.headers(signal)).toEqual({ authorization: 'Bearer first' })
    vi.advanceTimersByTime(2000)
    const [a, b] = await Promise.all([auth.headers(signal), auth.headers(signal)])
    expect(a).toEqual({ authorization: 'Bearer fresh-1' })
    expect(b).toEqual({ authorization: 'Bearer fresh-1' })
    expect(refreshes).toBe(1)
  })

  it('sends nothing, and asks nothing, for a registry that wants no token', async () => {
    vi.useFakeTimers()
    let refreshes = 0
    const auth = new BlobAuthorization(undefined, async () => { refreshes++; return 'Bearer x' })
    vi.advanceTimersByTime(10 * TOKEN_REUSE_MS)
    expect(await auth.headers(signal)).toEqual({})
    expect(refreshes).toBe(0)
  })
})
