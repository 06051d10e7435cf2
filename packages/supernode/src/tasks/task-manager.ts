import { raceSignal, TaskNotFoundError, taskIdFor, type ComponentLogger, type Logger, type PieceStore, type RegisterTaskRequest } from '@shoal/core'
import { Task, type TaskListener } from './task.ts'
import {
  DEFAULT_FAILED_TASK_RETRY_AFTER, DEFAULT_SOURCE_HEADERS_TIMEOUT,
  DEFAULT_FAILED_TASK_TTL, DEFAULT_IDLE_HOLDERS_TTL, DEFAULT_MAX_FAILED_TASKS, DEFAULT_MAX_TASKS_WITH_HOLDERS
} from '../scheduler/constants.ts'
import type { SourceFetcher } from '../cdn/source-fetcher.ts'
import type { SupernodeMetrics } from '../metrics.ts'

export interface TaskManagerInit {
  /** A failed task is answered from memory for this long before its source is tried again. @default 5000 ms */
  failedTaskRetryAfter?: number
  /** How long a registration waits for the source to answer. @default 30000 ms */
  sourceHeadersTimeout?: number
  /** A failed task is forgotten this long after it failed. @default 600000 ms */
  failedTaskTtl?: number
  /** Failed tasks kept at most, oldest forgotten first. @default 1024 */
  maxFailedTasks?: number
  /** Holder maps of tasks nobody asked about for this long are dropped. @default 1800000 ms */
  idleHoldersTtl?: number
  /** Tasks whose holder maps are kept at most, least recently asked about dropped first. @default 2048 */
  maxTasksWithHolders?: number
}

export interface TaskManagerComponents {
  store: PieceStore
  fetcher: SourceFetcher
  logger: ComponentLogger
  metrics: SupernodeMetrics
  /** Hears every task's changes (the scheduler, to wake long polls). */
  listener?: TaskListener
}

/**
 * Owns the tasks: creates a task on its first registration and starts exactly one
 * source fetch for it, however many daemons ask at once.
 */
export class TaskManager {
  private readonly components: TaskManagerComponents
  private readonly log: Logger
  private readonly tasks = new Map<string, Task>()
  /** The running source fetch of each task. */
  private readonly fetches = new Map<string, Promise<void>>()
  private readonly failedTaskRetryAfter: number
  private readonly sourceHeadersTimeout: number
  private readonly failedTaskTtl: number
  private readonly maxFailedTasks: number
  private readonly idleHoldersTtl: number
  private readonly maxTasksWithHolders: number
  private readonly controller = new AbortController()
  /**
   * Tasks whose source fetch a restart cut off, by id: their verified pieces stay on
   * disk, and the next registration's fetch continues after them (with its headers:
   * no credentials are kept).
   */
  private readonly resumable = new Map<string, { contentLength: number, pieceSize: number }>()

  constructor (components: TaskManagerComponents, init: TaskManagerInit = {}) {
    this.components = components
    this.log = components.logger.forComponent('shoal:supernode:tasks')
    this.failedTaskRetryAfter = init.failedTaskRetryAfter ?? DEFAULT_FAILED_TASK_RETRY_AFTER
    this.sourceHeadersTimeout = init.sourceHeadersTimeout ?? DEFAULT_SOURCE_HEADERS_TIMEOUT
    this.failedTaskTtl = init.failedTaskTtl ?? DEFAULT_FAILED_TASK_TTL
    this.maxFailedTasks = init.maxFailedTasks ?? DEFAULT_MAX_FAILED_TASKS
    this.idleHoldersTtl = init.idleHoldersTtl ?? DEFAULT_IDLE_HOLDERS_TTL
    this.maxTasksWithHolders = init.maxTasksWithHolders ?? DEFAULT_MAX_TASKS_WITH_HOLDERS
  }

  private create (init: { id: string, url: string, digest?: string | undefined }): Task {
    const task = new Task(init)
    task.listener = this.components.listener
    return task
  }

  /**
   * Loads the tasks whose content was fetched whole before a restart. Tasks cut off
   * mid-fetch keep their in-order prefix of verified pieces (when their length was
   * known) and resume on their next registration; others are dropped.
   */
  async start (): Promise<void> {
    const { store } = this.components
    // the store checked its index against the data files as it opened: a damaged task
    // is missing pieces here, and dropped
    store.onTaskDropped((taskId, reason) => {
      this.dropped(taskId, reason).catch((err: unknown) => { this.log.error({ err, taskId }, 'cannot forget a dropped task') })
    })
    for (const stored of await store.listTasks()) {
      if (stored.state === 'running' && stored.contentLength != null && stored.pieceSize > 0) {
        const nums = (await store.listPieces(stored.taskId)).map(p => p.num).sort((a, b) => a - b)
        if (nums.length > 0 && nums.every((num, i) => num === i)) {
          this.resumable.set(stored.taskId, { contentLength: stored.contentLength, pieceSize: stored.pieceSize })
          continue
        }
      }
      if (stored.state !== 'success' || stored.contentLength == null) {
        await store.deleteTask(stored.taskId)
        continue
      }
      const task = this.create({ id: stored.taskId, url: stored.url, digest: stored.digest })
      task.start(stored.contentLength, stored.pieceSize)
      for (const piece of await store.listPieces(stored.taskId)) {
        task.pieces.set(piece.num, piece)
      }
      if (task.pieces.size !== task.pieceCount) {
        this.log.warn({ taskId: task.id }, 'stored task is missing pieces; dropping it')
        await store.deleteTask(stored.taskId)
        continue
      }
      task.succeed(stored.contentLength)
      this.tasks.set(task.id, task)
    }
    this.log.info({ tasks: this.tasks.size, resumable: this.resumable.size }, 'tasks restored')
  }

  async stop (): Promise<void> {
    this.controller.abort(new Error('supernode stopping'))
    await Promise.allSettled([...this.fetches.values()])
  }

  get (taskId: string): Task {
    const task = this.tasks.get(taskId)
    if (task == null) {
      throw new TaskNotFoundError(`no task ${taskId}`)
    }
    return task
  }

  /** The task, if this supernode knows it. */
  find (taskId: string): Task | undefined {
    return this.tasks.get(taskId)
  }

  all (): IterableIterator<Task> {
    return this.tasks.values()
  }

  /**
   * Returns the task for this content, starting its source fetch if nobody has, once
   * the source has answered (so the caller learns the length, or the failure).
   */
  async register (request: Pick<RegisterTaskRequest, 'url'> & Partial<RegisterTaskRequest>, options: { signal?: AbortSignal } = {}): Promise<Task> {
    const id = taskIdFor({ url: request.url, digest: request.digest })
    let task = this.tasks.get(id)
    const { metrics } = this.components

    if (task == null) {
      task = this.create({ id, url: request.url, digest: request.digest })
      this.tasks.set(id, task)
      const resume = this.resumable.get(id)
      this.resumable.delete(id)
      this.startFetch(task, request.headers, resume)
      metrics.registrations.inc({ outcome: 'new' })
    } else if (task.state === 'failed' && !this.fetches.has(id) && Date.now() - task.failedAt >= this.failedTaskRetryAfter) {
      // URL and headers come together from this registrant: its credentials go to its
      // URL, never to the URL of whoever registered first (the failed fetch has ended,
      // its cleanup too, so nothing of it runs beside the new one)
      task.reset(request.url)
      this.startFetch(task, request.headers)
      metrics.registrations.inc({ outcome: 'new' })
    } else {
      metrics.registrations.inc({ outcome: task.state === 'failed' ? 'failed' : 'cached' })
    }

    const signals = [AbortSignal.timeout(this.sourceHeadersTimeout), ...(options.signal != null ? [options.signal] : [])]
    await raceSignal(task.ready, AbortSignal.any(signals))
    return task
  }

  /** The headers live in this fetch only: nothing keeps them once it ends. */
  private startFetch (task: Task, headers: Record<string, string> | undefined, resume?: { contentLength: number, pieceSize: number }): void {
    const fetch = this.components.fetcher.fetch(task, { headers, signal: this.controller.signal, ...(resume != null ? { resume } : {}) })
      .finally(() => { this.fetches.delete(task.id) })
    this.fetches.set(task.id, fetch)
  }

  /**
   * The store dropped pieces of a task by itself. Evicted: the task is forgotten, and
   * peers asking for its pieces get NOT_FOUND (the store no longer has them). Damaged
   * (a short read): the pieces no longer on disk are no longer offered; a complete task
   * that lost some is forgotten and deleted, so the next registration fetches it again.
   */
  async dropped (taskId: string, reason: 'damaged' | 'evicted'): Promise<void> {
    const task = this.tasks.get(taskId)
    if (task == null) {
      return
    }
    const { store } = this.components
    const kept = new Set((await store.listPieces(taskId)).map(p => p.num))
    for (const num of [...task.pieces.keys()]) {
      if (!kept.has(num)) {
        task.pieces.delete(num)
        task.holders.delete(num)
      }
    }
    task.changed()
    if (this.fetches.has(taskId) || task.state !== 'success') {
      return
    }
    if (reason === 'evicted' || task.pieces.size !== task.pieceCount) {
      this.log.warn({ taskId, reason }, 'forgetting a task the store dropped')
      this.tasks.delete(taskId)
      if (reason === 'damaged') {
        await store.deleteTask(taskId)
      }
    }
  }

  /**
   * A peer reports holding these tasks whole (its announce): it becomes a holder of
   * every piece this supernode has of each one it knows, so it is offered as a source
   * again, after a restart of this supernode or when a task moved here from another.
   * Unknown and failed tasks are skipped.
   * @returns how many of the tasks were known
   */
  recordHeld (peerId: string, taskIds: readonly string[]): number {
    let known = 0
    // bounded by the announce schema (at most MAX_ANNOUNCED_TASKS ids)
    for (const taskId of taskIds) {
      const task = this.tasks.get(taskId)
      if (task == null || task.state === 'failed') {
        continue
      }
      known++
      for (const num of task.pieces.keys()) {
        task.addHolder(num, peerId)
      }
    }
    return known
  }

  /**
   * A task is in use by the swarm (a peer asked for its pieces): least recently used
   * eviction should keep it, although no byte of it may be read here for a while.
   */
  touch (taskId: string): void {
    this.components.store.touch(taskId)
    const task = this.tasks.get(taskId)
    if (task != null) {
      task.lastAsked = Date.now()
    }
  }

  /**
   * Keeps memory flat: forgets failed tasks after their ttl (and the oldest beyond the
   * count), and drops the holder maps of tasks nobody asked about for a while (and of
   * the least recently asked beyond the count). A task's pieces stay: they are on disk,
   * bounded by the disk quota. Daemons' announces bring holders back.
   * @returns what was dropped
   */
  sweep (now = Date.now()): { failed: number, holders: number } {
    const failed: Task[] = []
    const withHolders: Task[] = []
    let droppedFailed = 0
    let droppedHolders = 0
    // bounded by the tasks known
    for (const task of this.tasks.values()) {
      if (task.state === 'failed') {
        if (this.fetches.has(task.id)) {
          continue
        }
        if (now - task.failedAt > this.failedTaskTtl) {
          this.tasks.delete(task.id)
          droppedFailed++
        } else {
          failed.push(task)
        }
      } else if (task.holders.size > 0) {
        if (task.state === 'success' && now - task.lastAsked > this.idleHoldersTtl) {
          task.clearHolders()
          droppedHolders++
        } else {
          withHolders.push(task)
        }
      }
    }
    if (failed.length > this.maxFailedTasks) {
      failed.sort((a, b) => a.failedAt - b.failedAt)
      for (const task of failed.slice(0, failed.length - this.maxFailedTasks)) {
        this.tasks.delete(task.id)
        droppedFailed++
      }
    }
    if (withHolders.length > this.maxTasksWithHolders) {
      withHolders.sort((a, b) => a.lastAsked - b.lastAsked)
      for (const task of withHolders.slice(0, withHolders.length - this.maxTasksWithHolders)) {
        if (task.state === 'success') {
          task.clearHolders()
          droppedHolders++
        }
      }
    }
    return { failed: droppedFailed, holders: droppedHolders }
  }

  /** Tasks known (all states). */
  get size (): number {
    return this.tasks.size
  }

  /** Forgets a departed peer everywhere. */
  removePeer (peerId: string): void {
    for (const task of this.tasks.values()) {
      task.removePeer(peerId)
    }
  }
}
