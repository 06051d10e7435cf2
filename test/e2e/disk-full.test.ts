/**
 * A daemon whose data dir is a small tmpfs (8 MiB) is asked for a 20 MiB layer: its
 * disk fills up mid-download. The client still gets the whole, verified layer (the rest
 * streams from the origin without being stored), no peer is blamed, no corrupt entry is
 * left, and a small layer afterwards is stored and served as usual.
 */
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { sample, scrape } from '../harness/metrics.ts'
import { sha256, startTestOrigin, type TestOrigin } from '../harness/origin.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const skip = requireReal({ binaries: ['mount', 'umount'], root: true })

async function pull (url: string): Promise<{ status: number, body: Buffer, complete: boolean, error?: unknown }> {
  const chunks: Buffer[] = []
  let status = 0
  try {
    const res = await request(url, { signal: AbortSignal.timeout(60_000) })
    status = res.statusCode
    for await (const chunk of res.body) {
      chunks.push(chunk as Buffer)
    }
    return { status, body: Buffer.concat(chunks), complete: true }
  } catch (err) {
    return { status, body: Buffer.concat(chunks), complete: false, error: err }
  }
}

describe.skipIf(skip != null)(`a full disk on the daemon${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let tmpfs: string | undefined
  let origin: TestOrigin
  let supernode: SupernodeHandle
  let daemon: DaemonHandle

  beforeAll(async () => {
    dir = await makeTestDir('disk-full')
    origin = await startTestOrigin()
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [origin.url], pieceSize: 1024 * 1024 })
    const dataDir = join(dir, 'host', 'data')
    await mkdir(dataDir, { recursive: true })
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', dataDir])
    tmpfs = dataDir
    daemon = await startDaemon({ dir, name: 'host', registry: origin.url, supernode: supernode.url })
  })

  afterAll(async () => {
    await daemon?.proc.stop()
    await supernode?.proc.stop()
    await origin?.stop()
    if (tmpfs != null) {
      execFileSync('umount', ['-l', tmpfs])
    }
    await removeTestDir(dir)
  })

  it('serves the whole layer anyway, blames no peer, and keeps working', async () => {
    const data = randomBytes(20 * 1024 * 1024)
    const path = `/v2/library/big/blobs/${sha256(data)}`
    origin.add(path, data)

    const res = await pull(`${daemon.url}${path}`)
    // the layer, whole and right; or a clear 5xx: never a short body as a whole one
    if (res.status === 200) {
      expect(res.complete).toBe(true)
      expect(res.body.equals(data)).toBe(true)
    } else {
      expect(res.status).toBeGreaterThanOrEqual(500)
    }
    expect(res.error).toBeUndefined()
    expect(res.status).toBe(200)

    const metrics = await scrape(`${daemon.url}/metrics`)
    expect(sample(metrics, 'shoal_dfget_back_to_source_total', { reason: 'ERR_STORE_WRITE' })).toBeGreaterThanOrEqual(1)
    // the local write failure is not a piece failure of the source (the supernode): it is
    // neither counted nor reported against it
    expect(sample(metrics, 'shoal_dfget_pieces_total', { source: 'supernode', result: 'ERR_STORE_WRITE' })).toBe(0)

    // the space the failed download took is given back: a small layer is stored and served
    const small = randomBytes(2 * 1024 * 1024)
    const smallPath = `/v2/library/small/blobs/${sha256(small)}`
    origin.add(smallPath, small)
    const ok = await pull(`${daemon.url}${smallPath}`)
    expect(ok.status).toBe(200)
    expect(ok.body.equals(small)).toBe(true)
    const again = await pull(`${daemon.url}${smallPath}`)
    expect(again.body.equals(small)).toBe(true)
  })
})
