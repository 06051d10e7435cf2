import {
  announceRequestSchema, HttpError, registerTaskRequestSchema, scheduleRequestSchema, TaskNotFoundError,
  type PeerAddress, type RegisterTaskResponse, type ScheduleResponse
} from '@shoal/core'
import { z } from 'zod'
import type { SupernodeMetrics } from '../metrics.ts'
import type { PeerRegistry } from '../peers/peer-registry.ts'
import type { ScheduleService } from '../scheduler/schedule-service.ts'
import type { Task } from '../tasks/task.ts'
import type { TaskManager } from '../tasks/task-manager.ts'

export interface ControlApiComponents {
  tasks: TaskManager
  peers: PeerRegistry
  scheduler: ScheduleService
  metrics: SupernodeMetrics
  self: () => PeerAddress
}

/** What a call needs besides its body: who is calling (from the connection), and when to give up. */
export interface ControlCallContext {
  /** The calling peer, as authenticated by the connection (never taken from the body) */
  caller: string
  signal: AbortSignal
}

const leaveRequestSchema = z.object({ peerId: z.string().min(1).max(128) })

/**
 * The supernode's control plane: register, schedule, announce, leave. Transport-free:
 * the control server (`/shoal/control/1.0.0`, cluster members only) calls it with the
 * caller's authenticated peer id. A peer speaks only for itself: a body naming another
 * peer is refused with 403, so no member can report for, or remove, another.
 */
export class ControlApi {
  private readonly c: ControlApiComponents

  constructor (components: ControlApiComponents) {
    this.c = components
  }

  /** "I want this content": the task, once its source has answered. */
  async register (input: unknown, ctx: ControlCallContext): Promise<RegisterTaskResponse> {
    const body = parse(registerTaskRequestSchema, input)
    speaksForItself(ctx.caller, body.peer.peerId)
    this.c.peers.upsert(body.peer)
    let task: Task
    try {
      task = await this.c.tasks.register(body, { signal: ctx.signal })
    } catch (err) {
      if (!ctx.signal.aborted && (err as Error).name === 'TimeoutError') {
        throw new HttpError(504, 'SOURCE_TIMEOUT', `the source did not answer in time: ${new URL(body.url).origin}`)
      }
      throw err
    }
    // a peer registering starts this content over: whatever it held before (it may
    // have dropped a copy that failed verification) it reports again as results
    task.removePeer(body.peer.peerId)
    return {
      taskId: task.id,
      state: task.state,
      contentLength: task.contentLength,
      pieceSize: task.pieceSize > 0 ? task.pieceSize : 1,
      supernode: this.c.self(),
      ...(task.error != null ? { error: task.error } : {})
    }
  }

  /**
   * Takes the caller's report of finished transfers and answers with up to `limit`
   * more pieces to fetch, long-polling up to `waitMs` when none is ready. The policy is
   * the scheduler's (`ScheduleService`); this only translates.
   */
  async schedule (taskId: string, input: unknown, ctx: ControlCallContext): Promise<ScheduleResponse> {
    const { tasks, peers, scheduler, metrics } = this.c
    const task = getTask(tasks, taskId)
    const body = parse(scheduleRequestSchema, input)
    speaksForItself(ctx.caller, body.peerId)
    metrics.scheduleRequests.inc()
    peers.touch(body.peerId)
    // peers downloading it keep the task among the recently used, so the quota evicts
    // layers nobody is pulling first
    tasks.touch(task.id)

    scheduler.report(task, body.peerId, body.results)
    const assignments = await scheduler.next(task, body.peerId, body, { signal: ctx.signal })
    for (const a of assignments) {
      metrics.assignments.inc({ source: a.sources[0]?.kind ?? 'supernode' })
    }
    return {
      state: task.state,
      contentLength: task.contentLength,
      pieceSize: task.pieceSize > 0 ? task.pieceSize : 1,
      pieceCount: task.pieceCount,
      assignments,
      ...(task.error != null ? { error: task.error } : {})
    }
  }

  /** The caller is alive, reachable at these addresses, and holds these complete tasks. */
  async announce (input: unknown, ctx: ControlCallContext): Promise<{ peerId: string }> {
    const { tasks, ...peer } = parse(announceRequestSchema, input)
    speaksForItself(ctx.caller, peer.peerId)
    this.c.peers.upsert(peer)
    if (tasks != null && tasks.length > 0) {
      this.c.tasks.recordHeld(peer.peerId, tasks)
    }
    return { peerId: peer.peerId }
  }

  /** The caller is going away: nobody is sent to it any more. */
  async leave (input: unknown, ctx: ControlCallContext): Promise<{ removed: string }> {
    const body = parse(leaveRequestSchema, input)
    speaksForItself(ctx.caller, body.peerId)
    const known = this.c.peers.remove(body.peerId)
    this.c.tasks.removePeer(body.peerId)
    this.c.scheduler.forgetPeer(body.peerId)
    if (!known) {
      throw new HttpError(404, 'PEER_NOT_FOUND', `no peer ${body.peerId}`)
    }
    return { removed: body.peerId }
  }
}

function parse<T> (schema: z.ZodType<T>, input: unknown): T {
  const parsed = schema.safeParse(input)
  if (!parsed.success) {
    throw new HttpError(400, 'BAD_REQUEST', `invalid request: ${parsed.error.issues.map(i => `${i.path.join('.')}: ${i.message}`).join('; ')}`)
  }
  return parsed.data
}

function speaksForItself (caller: string, claimed: string): void {
  if (claimed !== caller) {
    throw new HttpError(403, 'FORBIDDEN', `peer ${caller} cannot act as peer ${claimed}: a peer speaks only for itself`)
  }
}

function getTask (tasks: TaskManager, taskId: string): Task {
  try {
    return tasks.get(taskId)
  } catch (err) {
    if (err instanceof TaskNotFoundError) {
      throw new HttpError(404, 'TASK_NOT_FOUND', err.message)
    }
    throw err
  }
}
