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

interface Answer { status: number, headers: Record<string, unknown>, body: Buffer }

async function get (url: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET'): Promise<Answer> {
  const res = await request(url, { method, headers, signal: AbortSignal.timeout(20_000) })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

describe('OCI pull API of the mirror', () => {
  let origin: TestOrigin
  let swarm: TestSwarm
  let a: Daemon
  let b: Daemon

  beforeAll(async () => {
    origin = await startTestOrigin()
    swarm = await startSwarm(origin.url, { daemons: 2, pieceSize: PIECE })
    ;[a, b] = swarm.daemons as [Daemon, Daemon]
  })

  afterAll(async () => {
    await swarm.stop()
    await origin.stop()
  })

  it('answers Range with 206 and the exact bytes, 416 past the end, the whole body for several ranges', async () => {
    const data = randomBytes(5 * PIECE + 123)
    const path = `/v2/library/ranged/blobs/${sha256(data)}`
    origin.add(path, data)
    const url = `${a.url}${path}`

    const cases: Array<[string, number, number]> = [['bytes=0-', 0, data.byteLength - 1], [`bytes=${PIECE - 10}-${3 * PIECE + 10}`, PIECE - 10, 3 * PIECE + 10], ['bytes=-100', data.byteLength - 100, data.byteLength - 1], ['bytes=7-7', 7, 7], [`bytes=${data.byteLength - 1}-999999999`, data.byteLength - 1, data.byteLength - 1]]
    for (const [range, start, end] of cases) {
      const res = await get(url, { range })
      expect(res.status, range).toBe(206)
      expect(res.headers['content-range'], range).toBe(`bytes ${start}-${end}/${data.byteLength}`)
      expect(res.headers['content-length'], range).toBe(String(end - start + 1))
      expect(res.headers['accept-ranges']).toBe('bytes')
      expect(res.body.equals(data.subarray(start, end + 1)), range).toBe(true)
    }

    const past = await get(url, { range: `bytes=${data.byteLength}-` })
    expect(past.status).toBe(416)
    expect(past.headers['content-range']).toBe(`bytes */${data.byteLength}`)
    expect(JSON.parse(past.body.toString()).errors[0].code).toBe('RANGE_INVALID')

    const multi = await get(url, { range: 'bytes=0-1, 5-6' })
    expect(multi.status).toBe(200)
    expect(multi.body.equals(data)).toBe(true)

    const whole = await get(url)
    expect(whole.status).toBe(200)
    expect(whole.headers['accept-ranges']).toBe('bytes')

    const bad = await get(url, { range: 'bytes=9-2' })
    expect(bad.status).toBe(400)
    expect(JSON.parse(bad.body.toString()).errors[0].code).toBe('RANGE_INVALID')
    expect(origin.gets.get(path)).toBe(1)
  })

  it('holds a range back until the blob is verified while the supernode is still fetching it', async () => {
    const data = randomBytes(8 * PIECE)
    const path = `/v2/library/stalled/blobs/${sha256(data)}`
    // the registry sends two pieces' worth to the supernode, then nothing: the piece
    // digests it publishes meanwhile are not backed by the blob's digest
    origin.add(path, data, { stallFirstAfter: 2 * PIECE + 100 })
    const c = await swarm.addDaemon({ name: 'range-wait', init: { swarmNoProgressTimeout: 2_000 } })
    const started = Date.now()
    const res = await get(`${c.url}${path}`, { range: `bytes=100-${PIECE + 99}` })
    expect(res.status).toBe(206)
    expect(res.body.equals(data.subarray(100, PIECE + 100))).toBe(true)
    // answered only after this host fetched the whole blob from the origin itself (the
    // second GET) and checked its digest, not from the supernode's first pieces
    expect(origin.gets.get(path)).toBeGreaterThanOrEqual(2)
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000)
  })

  it('serves a range early from pieces whose digests the supernode had verified', async () => {
    const data = randomBytes(24 * PIECE)
    const path = `/v2/library/early/blobs/${sha256(data)}`
    origin.add(path, data)
    // the supernode's task completes (digest verified) through a
    expect((await get(`${a.url}${path}`)).body.equals(data)).toBe(true)
    // a host that brings the blob slowly (256 KiB/s: about 5 s for all of it)
    const slow = await swarm.addDaemon({ name: 'range-early', init: { downloadRate: 4 * PIECE } })
    const res = await get(`${slow.url}${path}`, { range: `bytes=${PIECE + 1}-${2 * PIECE + 1}` })
    expect(res.status).toBe(206)
    expect(res.body.equals(data.subarray(PIECE + 1, 2 * PIECE + 2))).toBe(true)
    // answered while the rest of the blob was still on its way
    expect(sample(await scrape(`${slow.url}/metrics`), 'shoal_dfget_active_downloads')).toBe(1)
    expect(origin.gets.get(path)).toBe(1)
  })

  it('never sends bytes of a piece that no longer matches its digest', async () => {
    const data = randomBytes(3 * PIECE)
    const digest = sha256(data)
    const path = `/v2/library/rot/blobs/${digest}`
    origin.add(path, data)
    expect((await get(`${a.url}${path}`)).body.equals(data)).toBe(true)
    // flip one byte of the second piece on disk
    const file = await open(a.store.dataPath(taskIdFor({ url: `${origin.url}${path}`, digest })), 'r+')
    const byte = Buffer.alloc(1)
    await file.read(byte, 0, 1, PIECE + 5)
    await file.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, PIECE + 5)
    await file.close()

    let received = Buffer.alloc(0)
    let failed: boolean
    try {
      const res = await request(`${a.url}${path}`, { headers: { range: `bytes=${PIECE}-${PIECE + 9}` }, signal: AbortSignal.timeout(10_000) })
      received = Buffer.from(await res.body.arrayBuffer())
      failed = res.statusCode !== 206
    } catch {
      failed = true
    }
    expect(failed).toBe(true)
    expect(received.equals(data.subarray(PIECE, PIECE + 10))).toBe(false)
  })

  it('answers HEAD on a blob from the store when held, and from the upstream without its body when not', async () => {
    const held = randomBytes(2 * PIECE + 1)
    const heldPath = `/v2/library/head/blobs/${sha256(held)}`
    origin.add(heldPath, held)
    await get(`${a.url}${heldPath}`)
    const gets = origin.gets.get(heldPath)
    // from now on the registry fails every request for it: only the store can answer
    origin.files.set(heldPath, { data: held, status: 503 })
    const fromStore = await get(`${a.url}${heldPath}`, {}, 'HEAD')
    expect(fromStore.status).toBe(200)
    expect(fromStore.headers['content-length']).toBe(String(held.byteLength))
    expect(fromStore.headers['docker-content-digest']).toBe(sha256(held))
    expect(fromStore.headers['accept-ranges']).toBe('bytes')

    const other = randomBytes(PIECE + 7)
    const otherPath = `/v2/library/head/blobs/${sha256(other)}`
    origin.add(otherPath, other)
    const notHeld = await get(`${a.url}${otherPath}`, {}, 'HEAD')
    expect(notHeld.status).toBe(200)
    expect(notHeld.headers['content-length']).toBe(String(other.byteLength))
    expect(notHeld.headers['docker-content-digest']).toBe(sha256(other))
    // no body fetched by anyone for either HEAD
    expect(origin.gets.get(otherPath)).toBeUndefined()
    expect(origin.gets.get(heldPath)).toBe(gets)

    const missing = await get(`${a.url}/v2/library/head/blobs/${sha256(randomBytes(8))}`, {}, 'HEAD')
    expect(missing.status).toBe(404)
  })

  it('fetches a manifest by digest once for every client of every daemon, verified; tags always go upstream', async () => {
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [] }))
    const digest = sha256(manifest)
    const path = `/v2/library/man/manifests/${digest}`
    origin.add(path, manifest)
    origin.add('/v2/library/man/manifests/v1', manifest)

    const answers = await Promise.all([a, b, a, b].map(async d => get(`${d.url}${path}`, { accept: 'application/vnd.oci.image.manifest.v1+json' })))
    answers.push(await get(`${a.url}${path}`), await get(`${b.url}${path}`, {}, 'HEAD'))
    for (const res of answers) {
      expect(res.status).toBe(200)
      expect(res.headers['docker-content-digest']).toBe(digest)
      expect(res.headers['content-length']).toBe(String(manifest.byteLength))
      // the manifest's own mediaType, as a registry answers
      expect(res.headers['content-type']).toBe('application/vnd.oci.image.manifest.v1+json')
    }
    for (const res of answers.slice(0, -1)) {
      expect(res.body.equals(manifest)).toBe(true)
    }
    // through the swarm: the supernode fetched it once for both daemons
    expect(origin.gets.get(path)).toBe(1)
    expect(sample(await scrape(`${a.url}/metrics`), 'shoal_dfget_manifest_cache_total', { result: 'hit' })).toBeGreaterThanOrEqual(2)

    const unknown = await get(`${a.url}/v2/library/man/manifests/${sha256(randomBytes(8))}`)
    expect(unknown.status).toBe(404)
    expect(JSON.parse(unknown.body.toString()).errors[0].code).toBe('MANIFEST_UNKNOWN')

    await get(`${a.url}/v2/library/man/manifests/v1`)
    await get(`${a.url}/v2/library/man/manifests/v1`)
    expect(origin.gets.get('/v2/library/man/manifests/v1')).toBe(2)
  })

  it('refuses a manifest that does not match its digest, every time it is asked for', async () => {
    const manifest = Buffer.from('{"schemaVersion":2,"layers":[]}')
    const path = `/v2/library/tampered/manifests/${sha256(manifest)}`
    origin.add(path, manifest, { serve: Buffer.from('{"schemaVersion":2,"layers":[{}]}') })
    for (let i = 0; i < 2; i++) {
      const res = await get(`${a.url}${path}`)
      expect(res.status).toBe(502)
      expect(JSON.parse(res.body.toString()).errors[0].code).toBe('MANIFEST_INVALID')
    }
    expect(origin.gets.get(path)).toBeGreaterThanOrEqual(1)
  })
})
