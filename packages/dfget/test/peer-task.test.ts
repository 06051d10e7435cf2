import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  createMetricsRegistry, PeerBusyError, PieceStore, silentLogger, StoreWriteError,
  type PieceAssignment, type PieceResult, type PieceSource, type RegisterTaskResponse, type ScheduleRequest, type ScheduleResponse, type StoredPiece
} from '@shoal/core'
import { DfgetMetrics, Download, PeerTask, type FetchOptions, type PeerTaskComponents } from '../src/index.ts'

const TASK = 'e'.repeat(64)
const DIGEST = `sha256:${'0'.repeat(64)}`
const supernode: PieceSource = { peerId: 'QmSupernode', addrs: ['/ip4/127.0.0.1/tcp/1'], kind: 'supernode' }
const stalled: PieceSource = { peerId: 'QmStalled', addrs: ['/ip4/127.0.0.1/tcp/2'], kind: 'peer' }

/**
 * A supernode that offers every piece from a peer first and itself second, the way the
 * scheduler does, and records what the daemon reports.
 */
function fakeSupernode (pieces: number, pieceSize: number): { client: PeerTaskComponents['client'], reported: PieceResult[] } {
  const reported: PieceResult[] = []
  const done = new Set<number>()
  const answer = (assignments: PieceAssignment[]): ScheduleResponse =>
    ({ state: 'success', contentLength: pieces * pieceSize, pieceSize, pieceCount: pieces, assignments })
  return {
    reported,
    client: {
      register: async (): Promise<RegisterTaskResponse> => ({ taskId: TASK, state: 'success', contentLength: pieces * pieceSize, pieceSize, supernode }),
      schedule: async (_taskId: string, body: ScheduleRequest): Promise<ScheduleResponse> => {
        reported.push(...body.results ?? [])
        for (const r of body.results ?? []) {
          if (r.ok) {
            done.add(r.num)
          }
        }
        const running = new Set(body.running ?? [])
        const next = Array.from({ length: pieces }, (_, num) => num).filter(num => !done.has(num) && !running.has(num)).slice(0, body.limit ?? 4)
        if (next.length === 0) {
          // a long poll, as the supernode holds it
          await new Promise(resolve => setTimeout(resolve, body.waitMs ?? 0))
        }
        return answer(next.map(num => ({ num, offset: num * pieceSize, length: pieceSize, digest: DIGEST, sources: [stalled, supernode] })))
      }
    }
  }
}

describe('PeerTask', () => {
  let store: PieceStore

  beforeEach(async () => {
    store = new PieceStore({ logger: silentLogger() }, { dataDir: await mkdtemp(join(tmpdir(), 'shoal-pt-')) })
    await store.start()
  })

  afterEach(async () => {
    await store.stop()
  })

  // A fleet on slow links once fell back to the origin because a piece timed out: the
  // timeout was a DOMException, whose numeric code (23) broke the error report and
  // with it the whole swarm download.
  it('retries a piece whose source timed out from the next source, and stays in the swarm', async () => {
    const { client, reported } = fakeSupernode(3, 4)
    const metrics = new DfgetMetrics(createMetricsRegistry({ processMetrics: false }))
    const fetcher = {
      fetch: async (_taskId: string, piece: PieceAssignment, source: PieceSource, _options?: FetchOptions): Promise<StoredPiece> => {
        if (source.kind === 'peer') {
          throw new DOMException('The operation was aborted due to timeout', 'TimeoutError')
        }
        return { num: piece.num, offset: piece.offset, length: piece.length, digest: piece.digest }
      }
    }
    const task = new PeerTask({ client, fetcher, store, metrics, logger: silentLogger(), self: () => ({ peerId: 'QmSelf', addrs: [], hostname: 'self' }) })
    const download = new Download({ taskId: TASK, url: 'http://origin/blob' })

    await task.run(download, { signal: AbortSignal.timeout(10_000) })

    expect(download.have.size).toBe(3)
    const failures = reported.filter(r => !r.ok)
    expect(failures.map(r => [r.source, r.code])).toEqual([['QmStalled', 'TimeoutError'], ['QmStalled', 'TimeoutError'], ['QmStalled', 'TimeoutError']])
    expect(reported.filter(r => r.ok).map(r => r.source)).toEqual(['QmSupernode', 'QmSupernode', 'QmSupernode'])
    const samples = await metrics.pieces.get()
    expect(samples.values.find(v => v.labels.source === 'peer' && v.labels.result === 'TimeoutError')?.value).toBe(3)
  })

  it('blames no peer when this host cannot write a piece (disk full): the download ends with the local error', async () => {
    const { client, reported } = fakeSupernode(3, 4)
    const metrics = new DfgetMetrics(createMetricsRegistry({ processMetrics: false }))
    const asked: string[] = []
    const fetcher = {
      fetch: async (_taskId: string, piece: PieceAssignment, source: PieceSource): Promise<StoredPiece> => {
        asked.push(`${piece.num}@${source.kind}`)
        if (piece.num === 1) {
          throw new StoreWriteError('cannot write piece 1: no space left on device', { cause: Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }) })
        }
        return { num: piece.num, offset: piece.offset, length: piece.length, digest: piece.digest }
      }
    }
    const task = new PeerTask({ client, fetcher, store, metrics, logger: silentLogger(), self: () => ({ peerId: 'QmSelf', addrs: [], hostname: 'self' }) })
    const download = new Download({ taskId: TASK, url: 'http://origin/blob' })
    await expect(task.run(download, { signal: AbortSignal.timeout(10_000) })).rejects.toThrow(StoreWriteError)
    expect(reported.filter(r => !r.ok)).toEqual([])
    // the next source is not tried for a local failure either
    expect(asked.filter(a => a.startsWith('1@'))).toEqual(['1@peer'])
  })

  it('hands a piece back when its peer is busy, instead of having the supernode serve it once more', async () => {
    const { client, reported } = fakeSupernode(2, 4)
    const metrics = new DfgetMetrics(createMetricsRegistry({ processMetrics: false }))
    const asked: string[] = []
    let busy = 2
    const fetcher = {
      fetch: async (_taskId: string, piece: PieceAssignment, source: PieceSource): Promise<StoredPiece> => {
        asked.push(`${piece.num}@${source.kind}`)
        if (source.kind === 'peer' && busy-- > 0) {
          throw new PeerBusyError('all 16 upload slots are taken')
        }
        return { num: piece.num, offset: piece.offset, length: piece.length, digest: piece.digest }
      }
    }
    const task = new PeerTask({ client, fetcher, store, metrics, logger: silentLogger(), self: () => ({ peerId: 'QmSelf', addrs: [], hostname: 'self' }) })
    const download = new Download({ taskId: TASK, url: 'http://origin/blob' })
    await task.run(download, { signal: AbortSignal.timeout(10_000) })
    expect(download.have.size).toBe(2)
    expect(asked.filter(a => a.endsWith('@supernode'))).toEqual([])
    expect(reported.filter(r => !r.ok).map(r => r.code)).toEqual(['ERR_PEER_BUSY', 'ERR_PEER_BUSY'])
  })

  it('gives up on the swarm when no piece data arrives for its no-progress time', async () => {
    const { client } = fakeSupernode(2, 4)
    const metrics = new DfgetMetrics(createMetricsRegistry({ processMetrics: false }))
    // every source answers, slowly, with nothing
    const fetcher = {
      fetch: async (_taskId: string, _piece: PieceAssignment, _source: PieceSource, options?: FetchOptions): Promise<StoredPiece> => {
        await new Promise(resolve => setTimeout(resolve, 150))
        options?.signal?.throwIfAborted()
        throw new Error('nothing')
      }
    }
    const task = new PeerTask({ client, fetcher, store, metrics, logger: silentLogger(), self: () => ({ peerId: 'QmSelf', addrs: [], hostname: 'self' }) },
      { noProgressTimeout: 500, maxPieceRounds: 1000, pollWait: 50 })
    const download = new Download({ taskId: TASK, url: 'http://origin/blob' })
    const started = Date.now()
    await expect(task.run(download, { signal: AbortSignal.timeout(10_000) })).rejects.toMatchObject({ code: 'ERR_PIECE_SOURCES_EXHAUSTED' })
    expect(Date.now() - started).toBeLessThan(3_000)
  })

  // A download moved to another supernode reports its stored pieces at registration,
  // while that supernode is still fetching the source: it records no holder for pieces
  // it does not have yet and keeps assigning them. Skipping them silently stalled the
  // download until the no-progress time sent it to the origin.
  it('reports again a piece it already has when it is assigned it, and fetches only the others', async () => {
    const { client, reported } = fakeSupernode(3, 4)
    let first = true
    const forgetful: PeerTaskComponents['client'] = {
      register: client.register,
      schedule: async (taskId, body, options) => {
        if (first) {
          // the registration-time report, lost
          first = false
          return client.schedule(taskId, { ...body, results: [] }, options)
        }
        return client.schedule(taskId, body, options)
      }
    }
    await store.putTask({ taskId: TASK, url: 'http://origin/blob', contentLength: 12, pieceSize: 4, state: 'running', updatedAt: Date.now() })
    for (const num of [0, 1]) {
      await store.writePiece(TASK, { num, offset: num * 4, length: 4 }, (async function * () { yield Buffer.from('abcd') })())
    }
    const asked: number[] = []
    const fetcher = {
      fetch: async (_taskId: string, piece: PieceAssignment): Promise<StoredPiece> => {
        asked.push(piece.num)
        return { num: piece.num, offset: piece.offset, length: piece.length, digest: piece.digest }
      }
    }
    const metrics = new DfgetMetrics(createMetricsRegistry({ processMetrics: false }))
    const task = new PeerTask({ client: forgetful, fetcher, store, metrics, logger: silentLogger(), self: () => ({ peerId: 'QmSelf', addrs: [], hostname: 'self' }) },
      { noProgressTimeout: 2_000, pollWait: 50 })
    const download = new Download({ taskId: TASK, url: 'http://origin/blob' })
    await task.run(download, { signal: AbortSignal.timeout(10_000) })
    expect(download.have.size).toBe(3)
    expect(asked).toEqual([2])
    expect(reported.filter(r => r.ok && r.source === 'QmSelf').map(r => r.num).sort()).toEqual([0, 1])
  })
  it('counts piece bytes as same_idc or cross_idc by the source the supernode named', async () => {
    const near: PieceSource = { peerId: 'QmNear', addrs: ['/ip4/127.0.0.1/tcp/3'], kind: 'peer', idc: 'idc-a' }
    const far: PieceSource = { peerId: 'QmFar', addrs: ['/ip4/127.0.0.1/tcp/4'], kind: 'peer', idc: 'idc-b' }
    const undeclared: PieceSource = { peerId: 'QmSomewhere', addrs: ['/ip4/127.0.0.1/tcp/5'], kind: 'peer' }
    const sources = [near, far, undeclared, near]
    const pieceSize = 10
    const done = new Set<number>()
    const client: PeerTaskComponents['client'] = {
      register: async (): Promise<RegisterTaskResponse> => ({ taskId: TASK, state: 'success', contentLength: 4 * pieceSize, pieceSize, supernode }),
      schedule: async (_taskId: string, body: ScheduleRequest): Promise<ScheduleResponse> => {
        for (const r of body.results ?? []) {
          if (r.ok) {
            done.add(r.num)
          }
        }
        const running = new Set(body.running ?? [])
        const next = [0, 1, 2, 3].filter(num => !done.has(num) && !running.has(num)).slice(0, body.limit ?? 4)
        return { state: 'success', contentLength: 4 * pieceSize, pieceSize, pieceCount: 4, assignments: next.map(num => ({ num, offset: num * pieceSize, length: pieceSize, digest: DIGEST, sources: [sources[num]!, supernode] })) }
      }
    }
    const metrics = new DfgetMetrics(createMetricsRegistry({ processMetrics: false }))
    const fetcher = {
      fetch: async (_taskId: string, piece: PieceAssignment): Promise<StoredPiece> => ({ num: piece.num, offset: piece.offset, length: piece.length, digest: piece.digest })
    }
    const task = new PeerTask({ client, fetcher, store, metrics, logger: silentLogger(), self: () => ({ peerId: 'QmSelf', addrs: [], hostname: 'self', idc: 'idc-a' }) })
    await task.run(new Download({ taskId: TASK, url: 'http://origin/blob' }), { signal: AbortSignal.timeout(10_000) })
    const bytes = Object.fromEntries((await metrics.pieceBytes.get()).values.filter(v => v.labels.source === 'peer').map(v => [v.labels.locality, v.value]))
    expect(bytes).toEqual({ same_idc: 2 * pieceSize, cross_idc: pieceSize, unknown: pieceSize })
  })
})
