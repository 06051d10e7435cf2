import { randomBytes } from 'node:crypto'
import { open } from 'node:fs/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { taskIdFor } from '@shoal/core'
import { sample, scrape } from '../../../test/harness/metrics.ts'
import { sha256, startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'
import { startSwarm, type TestSwarm } from './fixtures/swarm.ts'
import type { Daemon } from '../src/index.ts'

const PIECE = 64 * 1024
const MANIFEST_TYPE = 'application/vnd.docker.distribution.manifest.v2+json'

async function get (url: string, method: 'GET' | 'HEAD' | 'PUT' | 'DELETE' = 'GET'): Promise<{ status: number, headers: Record<string, unknown>, body: Buffer }> {
  const res = await request(url, { method, signal: AbortSignal.timeout(20_000) })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

/** Reads a response to the end; `complete` only for a 200 whose body arrived whole. */
async function tryDownload (url: string): Promise<{ complete: boolean, received: number }> {
  let received = 0
  try {
    const res = await request(url, { signal: AbortSignal.timeout(20_000) })
    for await (const chunk of res.body) {
      received += (chunk as Buffer).byteLength
    }
    return { complete: res.statusCode === 200, received }
  } catch {
    return { complete: false, received }
  }
}

const bytes = async (d: Daemon, source: string): Promise<number> => sample(await scrape(`${d.url}/metrics`), 'shoal_dfget_download_bytes_total', { source })

describe('registry mirror', () => {
  let origin: TestOrigin
  let swarm: TestSwarm
  let a: Daemon
  let b: Daemon

  beforeAll(async () => {
    origin = await startTestOrigin()
    origin.files.set('/v2/', { data: Buffer.from('{}') })
    swarm = await startSwarm(origin.url, { daemons: 2, pieceSize: PIECE })
    ;[a, b] = swarm.daemons as [Daemon, Daemon]
  })

  afterAll(async () => {
    await swarm.stop()
    await origin.stop()
  })

  it('serves a blob through the swarm: origin once, then the supernode, then a peer', async () => {
    const data = randomBytes(5 * PIECE + 123)
    const digest = sha256(data)
    const path = `/v2/library/app/blobs/${digest}`
    origin.add(path, data)

    const first = await get(`${a.url}${path}`)
    expect(first.status).toBe(200)
    expect(first.body.equals(data)).toBe(true)
    expect(first.headers['content-length']).toBe(String(data.byteLength))
    expect(first.headers['docker-content-digest']).toBe(digest)
    expect(await bytes(a, 'supernode')).toBe(data.byteLength)

    const second = await get(`${b.url}${path}`)
    expect(second.body.equals(data)).toBe(true)
    expect(await bytes(b, 'peer')).toBe(data.byteLength)
    expect(await bytes(b, 'origin')).toBe(0)
    expect(origin.gets.get(path)).toBe(1)
  })

  it('serves an empty blob, and one whose source sends no length', async () => {
    const empty = Buffer.alloc(0)
    const emptyPath = `/v2/library/app/blobs/${sha256(empty)}`
    origin.add(emptyPath, empty)
    const res = await get(`${b.url}${emptyPath}`)
    expect(res.status).toBe(200)
    expect(res.body.byteLength).toBe(0)

    const data = randomBytes(2 * PIECE + 9)
    const path = `/v2/library/app/blobs/${sha256(data)}`
    origin.add(path, data, { chunked: true })
    const chunked = await get(`${b.url}${path}`)
    expect(chunked.status).toBe(200)
    expect(chunked.body.equals(data)).toBe(true)
  })

  it('answers a repeated request from disk', async () => {
    const data = randomBytes(2 * PIECE)
    const path = `/v2/library/app/blobs/${sha256(data)}`
    origin.add(path, data)
    await get(`${a.url}${path}`)
    const before = sample(await scrape(`${a.url}/metrics`), 'shoal_dfget_cache_hits_total')
    const again = await get(`${a.url}${path}`)
    expect(again.body.equals(data)).toBe(true)
    expect(sample(await scrape(`${a.url}/metrics`), 'shoal_dfget_cache_hits_total')).toBe(before + 1)
  })

  it('passes /v2/ and manifests through unchanged', async () => {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST_TYPE, layers: [] }, null, 3))
    origin.add('/v2/library/app/manifests/v1', manifest)
    const ping = await get(`${a.url}/v2/`)
    expect(ping.status).toBe(200)
    const res = await get(`${a.url}/v2/library/app/manifests/v1`)
    expect(res.status).toBe(200)
    expect(res.body.equals(manifest)).toBe(true)
    expect((await get(`${a.url}/v2/library/app/manifests/v1`, 'HEAD')).headers['content-length']).toBe(String(manifest.byteLength))
    expect((await get(`${a.url}/v2/library/app/manifests/v2`)).status).toBe(404)
  })

  it.each([
    ['/v2/library/app/blobs/sha256:abc', 400, 'DIGEST_INVALID'],
    ['/v2/Library/App/blobs/sha256:' + 'a'.repeat(64), 400, 'NAME_INVALID'],
    [`/v2/library/app/blobs/sha256:${'0'.repeat(64)}`, 404, 'BLOB_UNKNOWN']
  ])('answers %s with %i %s', async (path, status, code) => {
    const res = await get(`${a.url}${path}`)
    expect(res.status).toBe(status)
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe(code)
  })

  it('refuses writes: it is a mirror', async () => {
    const res = await get(`${a.url}/v2/library/app/manifests/v1`, 'PUT')
    expect(res.status).toBe(405)
    expect(JSON.parse(res.body.toString()).errors[0].code).toBe('UNSUPPORTED')
  })

  it('never completes a body that does not match its digest', async () => {
    const data = randomBytes(3 * PIECE)
    const path = `/v2/library/app/blobs/${sha256(data)}`
    origin.add(path, data, { serve: Buffer.concat([data.subarray(0, 3 * PIECE - 1), Buffer.from([data.at(-1)! ^ 1])]) })
    const res = await tryDownload(`${a.url}${path}`)
    expect(res.complete).toBe(false)
    expect(res.received).toBeLessThan(data.byteLength)
  })

  it('checks content read back from disk, and fetches it again when it rotted', async () => {
    const data = randomBytes(3 * PIECE)
    const digest = sha256(data)
    const path = `/v2/library/app/blobs/${digest}`
    origin.add(path, data)
    expect((await get(`${a.url}${path}`)).body.equals(data)).toBe(true)

    // flip the very last byte on disk: every piece record still looks fine
    const file = await open(a.store.dataPath(taskIdFor({ url: `${origin.url}${path}`, digest })), 'r+')
    await file.write(Buffer.from([data.at(-1)! ^ 0xff]), 0, 1, data.byteLength - 1)
    await file.close()

    const rotten = await tryDownload(`${a.url}${path}`)
    expect(rotten.complete).toBe(false)
    expect(rotten.received).toBeLessThan(data.byteLength)

    expect((await get(`${a.url}${path}`)).body.equals(data)).toBe(true)
  })

  it('goes back to the origin when the supernode is down', async () => {
    const lonely = await swarm.addDaemon({ supernode: 'http://127.0.0.1:9', name: 'lonely' })
    const data = randomBytes(2 * PIECE + 7)
    const path = `/v2/library/app/blobs/${sha256(data)}`
    origin.add(path, data)
    const res = await get(`${lonely.url}${path}`)
    expect(res.status).toBe(200)
    expect(res.body.equals(data)).toBe(true)
    expect(await bytes(lonely, 'origin')).toBe(data.byteLength)
    const metrics = await scrape(`${lonely.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_back_to_source_total', { reason: 'ERR_SUPERNODE_UNAVAILABLE' })).toBe(1)
    // skipped for the cool-down, and the dashboard can say which one
    expect(sample(metrics, 'shoal_dfget_supernode_breaker_open')).toBe(1)
    expect(metrics.get('shoal_dfget_supernode_available{supernode="http://127.0.0.1:9"}')).toBe(0)
  })
})
