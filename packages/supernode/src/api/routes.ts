import {
  API_PREFIX, HttpError, peerInfoSchema, readJson, registerTaskRequestSchema, scheduleRequestSchema, sendJson,
  TaskNotFoundError, type RegisterTaskResponse, type Route, type ScheduleResponse, type PeerAddress
} from '@shoal/core'
import type { SupernodeMetrics } from '../metrics.ts'
import type { PeerRegistry } from '../peers/peer-registry.ts'
import type { Scheduler } from '../scheduler/scheduler.ts'
import type { Task } from '../tasks/task.ts'
import type { TaskManager } from '../tasks/task-manager.ts'

export interface ApiComponents {
  tasks: TaskManager
  peers: PeerRegistry
  scheduler: Scheduler
  metrics: SupernodeMetrics
  self: () => PeerAddress
}

const TASK_ID = '(?<taskId>[a-f0-9]{64})'
const PEER_ID = '(?<peerId>[1-9A-HJ-NP-Za-km-z]{1,128})'

function getTask (tasks: TaskManager, taskId: string | undefined): Task {
  try {
    return tasks.get(taskId ?? '')
  } catch (err) {
    if (err instanceof TaskNotFoundError) {
      throw new HttpError(404, 'TASK_NOT_FOUND', err.message)
    }
    throw err
  }
}

/**
 * The supernode's HTTP API. Message shapes live in `@shoal/core` (protocol/api.ts).
 */
export function apiRoutes (c: ApiComponents): Route[] {
  return [
    {
      methods: ['POST'],
      pattern: new RegExp(`^${API_PREFIX}/tasks$`),
      handler: async ({ req, res, signal }) => {
        const body = await readJson(req, registerTaskRequestSchema)
        c.peers.upsert(body.peer)
        let task: Task
        try {
          task = await c.tasks.register(body, { signal })
        } catch (err) {
          if (!signal.aborted && (err as Error).name === 'TimeoutError') {
            throw new HttpError(504, 'SOURCE_TIMEOUT', `the source did not answer in time: ${body.url}`)
          }
          throw err
        }
        // a peer registering starts this content over: whatever it held before (it may
        // have dropped a copy that failed verification) it reports again as results
        task.removePeer(body.peer.peerId)
        const answer: RegisterTaskResponse = {
          taskId: task.id,
          state: task.state,
          contentLength: task.contentLength,
          pieceSize: task.pieceSize > 0 ? task.pieceSize : 1,
          supernode: c.self(),
          ...(task.error != null ? { error: task.error } : {})
        }
        sendJson(res, 200, answer)
      }
    },
    {
      methods: ['GET'],
      pattern: new RegExp(`^${API_PREFIX}/tasks/${TASK_ID}$`),
      handler: async ({ res, params }) => {
        const task = getTask(c.tasks, params.taskId)
        const holders: Record<string, number> = {}
        for (const set of task.holders.values()) {
          for (const id of set) {
            holders[id] = (holders[id] ?? 0) + 1
          }
        }
        sendJson(res, 200, {
          taskId: task.id,
          url: task.url,
          digest: task.digest,
          state: task.state,
          contentLength: task.contentLength,
          pieceSize: task.pieceSize,
          pieceCount: task.pieceCount,
          piecesAtSupernode: task.pieces.size,
          piecesByPeer: holders,
          error: task.error
        })
      }
    },
    {
      methods: ['POST'],
      pattern: new RegExp(`^${API_PREFIX}/tasks/${TASK_ID}/schedule$`),
      handler: async ({ req, res, params, signal }) => {
        const task = getTask(c.tasks, params.taskId)
        const body = await readJson(req, scheduleRequestSchema)
        c.metrics.scheduleRequests.inc()
        c.peers.touch(body.peerId)

        for (const result of body.results) {
          c.scheduler.settle(task.id, body.peerId, result.num)
          // the supernode's own uploads, and pieces a peer already had, say nothing of a peer's health
          if (result.source !== c.self().peerId && result.source !== body.peerId) {
            if (result.code === 'ERR_PEER_BUSY') {
              c.peers.recordBusy(result.source)
            } else {
              c.peers.recordTransfer(result.source, result.ok)
            }
          }
          if (result.ok) {
            task.addHolder(result.num, body.peerId)
          }
        }
        if (body.results.length > 0) {
          // a finished or failed transfer may free a piece for peers waiting on it
          task.changed()
        }

        const running = new Set(body.running)
        const deadline = Date.now() + body.waitMs
        // bounded: each pass either answers or waits for a change until the deadline
        for (let pass = 0; pass < 10_000; pass++) {
          const assignments = task.state === 'failed' ? [] : c.scheduler.schedule(task, body.peerId, running, body.limit)
          const remaining = deadline - Date.now()
          const nothingLeft = task.state === 'success' && task.heldBy(body.peerId) + running.size >= (task.pieceCount ?? 0)
          if (assignments.length > 0 || task.state === 'failed' || nothingLeft || body.limit === 0 || remaining <= 0 || signal.aborted) {
            for (const a of assignments) {
              c.metrics.assignments.inc({ source: a.sources[0]?.kind ?? 'supernode' })
            }
            const answer: ScheduleResponse = {
              state: task.state,
              contentLength: task.contentLength,
              pieceSize: task.pieceSize > 0 ? task.pieceSize : 1,
              pieceCount: task.pieceCount,
              assignments,
              ...(task.error != null ? { error: task.error } : {})
            }
            sendJson(res, 200, answer)
            return
          }
          await task.waitForChange(remaining, signal)
        }
        throw new HttpError(503, 'SCHEDULE_LOOP', 'schedule did not settle')
      }
    },
    {
      methods: ['PUT'],
      pattern: new RegExp(`^${API_PREFIX}/peers/${PEER_ID}$`),
      handler: async ({ req, res, params }) => {
        const body = await readJson(req, peerInfoSchema)
        if (body.peerId !== params.peerId) {
          throw new HttpError(400, 'BAD_REQUEST', `peer id in the body (${body.peerId}) is not the one in the path`)
        }
        c.peers.upsert(body)
        sendJson(res, 200, { peerId: body.peerId })
      }
    },
    {
      methods: ['DELETE'],
      pattern: new RegExp(`^${API_PREFIX}/peers/${PEER_ID}$`),
      handler: async ({ res, params }) => {
        const peerId = params.peerId ?? ''
        const known = c.peers.remove(peerId)
        c.tasks.removePeer(peerId)
        sendJson(res, known ? 200 : 404, known ? { removed: peerId } : { error: { code: 'PEER_NOT_FOUND', message: `no peer ${peerId}` } })
      }
    }
  ]
}
