import { MAX_ANNOUNCED_TASKS, type PieceStore } from '@shoal/core'

/**
 * The complete tasks this host holds, most recently used first, at most `limit`: what
 * the daemon's announce tells the supernodes, so a supernode that restarted (or that a
 * task moved to) sends peers here again for them.
 */
export async function heldTasks (store: Pick<PieceStore, 'listTasks' | 'lastUsed'>, limit = MAX_ANNOUNCED_TASKS): Promise<string[]> {
  const complete = (await store.listTasks()).filter(t => t.state === 'success')
  return complete
    .map(t => ({ taskId: t.taskId, used: store.lastUsed(t.taskId) }))
    .sort((a, b) => b.used - a.used)
    .slice(0, Math.max(0, Math.min(limit, MAX_ANNOUNCED_TASKS)))
    .map(t => t.taskId)
}
