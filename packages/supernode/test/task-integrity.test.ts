import { randomBytes } from 'node:crypto'
import { mkdtemp, truncate } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createMetricsRegistry, PieceStore, silentLogger, SourceClient, TaskNotFoundError } from '@shoal/core'
import { SourceFetcher, SupernodeMetrics, TaskManager } from '../src/index.ts'

const TASK = 'c'.repeat(64)
const PIECE = 1000

describe('TaskManager and a damaged store', () => {
  const cleanup: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) {
      await f()
    }
  })

  const open = async (dataDir: string): Promise<{ store: PieceStore, tasks: TaskManager }> => {
    const store = new PieceStore({ logger: silentLogger() }, { dataDir })
    await store.start()
    const source = new SourceClient({ logger: silentLogger() }, { allow: [] })
    const metrics = new SupernodeMetrics(createMetricsRegistry({ processMetrics: false }))
    const tasks = new TaskManager({ store, fetcher: new SourceFetcher({ store, source, logger: silentLogger(), metrics }), logger: silentLogger(), metrics })
    await tasks.start()
    cleanup.push(async () => { await tasks.stop(); await source.stop(); await store.stop() })
    return { store, tasks }
  }

  const storeTask = async (store: PieceStore): Promise<void> => {
    await store.putTask({ taskId: TASK, url: 'http://origin/x', contentLength: 3 * PIECE, pieceSize: PIECE, state: 'success', updatedAt: Date.now() })
    for (const num of [0, 1, 2]) {
      const data = randomBytes(PIECE)
      await store.writePiece(TASK, { num, offset: num * PIECE, length: PIECE }, (async function * () { yield data })())
    }
  }

  it('drops at start a complete task whose data file is short', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-sn-integrity-'))
    const first = await open(dir)
    await storeTask(first.store)
    await cleanup.pop()?.()

    const again = await open(dir)
    expect(again.tasks.get(TASK).state).toBe('success')
    await cleanup.pop()?.()

    await truncate(again.store.dataPath(TASK), 2 * PIECE + 10)
    const damaged = await open(dir)
    expect(() => damaged.tasks.get(TASK)).toThrow(TaskNotFoundError)
    expect(await damaged.store.getTask(TASK)).toBeUndefined()
  })

  it('forgets a complete task when a read comes up short, so it is fetched again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-sn-integrity-'))
    const setup = await open(dir)
    await storeTask(setup.store)
    await cleanup.pop()?.()
    const { store, tasks } = await open(dir)
    expect(tasks.get(TASK).pieces.size).toBe(3)

    await truncate(store.dataPath(TASK), PIECE)
    // what the piece server does when a read comes up short
    await store.checkTask(TASK)
    // the listener runs on its own: bounded wait
    for (let i = 0; i < 50; i++) {
      try {
        tasks.get(TASK)
      } catch {
        break
      }
      await new Promise(resolve => setTimeout(resolve, 10))
    }
    expect(() => tasks.get(TASK)).toThrow(TaskNotFoundError)
    expect(await store.getTask(TASK)).toBeUndefined()
  })
})
