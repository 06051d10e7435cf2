import { describe, expect, it } from 'vitest'
import { announceRequestSchema, MAX_ANNOUNCED_TASKS, type StoredTask } from '@shoal/core'
import { heldTasks } from '../src/download/held-tasks.ts'

const id = (n: number): string => n.toString(16).padStart(64, '0')
const task = (n: number, state: StoredTask['state']): StoredTask =>
  ({ taskId: id(n), url: `http://origin/${n}`, contentLength: 10, pieceSize: 10, state, updatedAt: 0 })

describe('heldTasks', () => {
  it('names complete tasks only, most recently used first, at most the limit', async () => {
    const store = {
      listTasks: async () => [task(1, 'success'), task(2, 'running'), task(3, 'success'), task(4, 'success'), task(5, 'failed')],
      lastUsed: (taskId: string) => ({ [id(1)]: 100, [id(3)]: 300, [id(4)]: 200 })[taskId] ?? 0
    }
    expect(await heldTasks(store)).toEqual([id(3), id(4), id(1)])
    expect(await heldTasks(store, 2)).toEqual([id(3), id(4)])
  })

  it('never names more than an announce may carry', async () => {
    const many = Array.from({ length: MAX_ANNOUNCED_TASKS + 10 }, (_, i) => task(i, 'success'))
    const held = await heldTasks({ listTasks: async () => many, lastUsed: () => 0 }, 1_000_000)
    expect(held).toHaveLength(MAX_ANNOUNCED_TASKS)
    const peer = { peerId: 'QmPeer', addrs: ['/ip4/127.0.0.1/tcp/1'], hostname: 'h' }
    expect(announceRequestSchema.safeParse({ ...peer, tasks: held }).success).toBe(true)
    expect(announceRequestSchema.safeParse({ ...peer, tasks: [...held, id(1)] }).success).toBe(false)
    // an announce from an older daemon, without tasks, is still one
    expect(announceRequestSchema.safeParse(peer).success).toBe(true)
  })
})
