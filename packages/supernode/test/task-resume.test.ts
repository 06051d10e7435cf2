import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createMetricsRegistry, PieceStore, silentLogger, SourceClient } from '@shoal/core'
import { SourceFetcher, SupernodeMetrics, TaskManager } from '../src/index.ts'
import { sha256, startTestOrigin, type TestOrigin } from '../../../test/harness/origin.ts'

const PIECE = 1000
const peer = { peerId: 'QmPeer', addrs: ['/ip4/127.0.0.1/tcp/1'], hostname: 'h' }

/** Polls `check` every 20 ms until it holds or `ms` passed. */
async function until (check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  // bounded by the deadline
  while (!check()) {
    if (Date.now() > deadline) {
      return false
    }
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return true
}

describe('a source fetch cut off by a supernode restart', () => {
  const cleanup: Array<() => Promise<void>> = []
  let origin: TestOrigin | undefined
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) {
      await f()
    }
    await origin?.stop()
  })

  const open = async (dataDir: string, allow: string): Promise<{ store: PieceStore, tasks: TaskManager, close: () => Promise<void> }> => {
    const store = new PieceStore({ logger: silentLogger() }, { dataDir })
    await store.start()
    const source = new SourceClient({ logger: silentLogger() }, { allow: [allow] })
    const metrics = new SupernodeMetrics(createMetricsRegistry({ processMetrics: false }))
    const tasks = new TaskManager({ store, fetcher: new SourceFetcher({ store, source, logger: silentLogger(), metrics }, { pieceSize: PIECE }), logger: silentLogger(), metrics })
    await tasks.start()
    let closed = false
    const close = async (): Promise<void> => {
      if (!closed) {
        closed = true
        await tasks.stop()
        await source.stop()
        await store.stop()
      }
    }
    cleanup.push(close)
    return { store, tasks, close }
  }

  it('keeps the verified pieces and continues after them with a Range request and the new registrant\'s headers', async () => {
    origin = await startTestOrigin()
    const data = randomBytes(10 * PIECE)
    // the first GET sends four pieces and a half, then nothing
    const { url, digest } = origin.add('/blobs/cut', data, { stallFirstAfter: 4 * PIECE + PIECE / 2 })
    const dir = await mkdtemp(join(tmpdir(), 'shoal-sn-resume-'))

    const first = await open(dir, origin.url)
    const cut = await first.tasks.register({ url, digest, headers: { authorization: 'Bearer first' }, peer })
    expect(await until(() => cut.pieces.size === 4, 10_000)).toBe(true)
    await first.close()

    const second = await open(dir, origin.url)
    const task = await second.tasks.register({ url, digest, headers: { authorization: 'Bearer second' }, peer })
    expect(await until(() => task.state !== 'running', 10_000)).toBe(true)
    expect(task.state).toBe('success')
    expect(task.pieces.size).toBe(10)
    // one Range request after the four verified pieces, with the second registrant's credentials
    expect(origin.ranges.get('/blobs/cut')).toEqual([`bytes=${4 * PIECE}-`])
    expect(origin.headers.get('/blobs/cut')?.[1]?.authorization).toBe('Bearer second')
    // and the pieces read back as the content (the digest was checked over the whole)
    const reader = await second.store.openReader(task.id)
    const back = Buffer.alloc(data.byteLength)
    await reader.readFully(back, 0)
    await reader.close()
    expect(back.equals(data)).toBe(true)
  })

  it('starts over when the source answers a Range request with the whole content', async () => {
    const data = randomBytes(10 * PIECE)
    const ranges: Array<string | undefined> = []
    let gets = 0
    // the first GET stalls after four pieces and a half; every answer is a whole 200
    const server = createServer((req, res) => {
      ranges.push(req.headers.range)
      gets++
      res.writeHead(200, { 'content-length': String(data.byteLength) })
      if (gets === 1) {
        res.write(data.subarray(0, 4 * PIECE + PIECE / 2))
        return
      }
      res.end(data)
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    cleanup.push(async () => { server.closeAllConnections(); server.close() })
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const url = `${base}/blob`
    const dir = await mkdtemp(join(tmpdir(), 'shoal-sn-resume-'))

    const first = await open(dir, base)
    const cut = await first.tasks.register({ url, digest: sha256(data), peer })
    expect(await until(() => cut.pieces.size === 4, 10_000)).toBe(true)
    await first.close()

    const second = await open(dir, base)
    const task = await second.tasks.register({ url, digest: sha256(data), peer })
    expect(await until(() => task.state !== 'running', 10_000)).toBe(true)
    expect(task.state).toBe('success')
    expect(ranges).toEqual([undefined, `bytes=${4 * PIECE}-`])
    const reader = await second.store.openReader(task.id)
    const back = Buffer.alloc(data.byteLength)
    await reader.readFully(back, 0)
    await reader.close()
    expect(back.equals(data)).toBe(true)
  })
})
