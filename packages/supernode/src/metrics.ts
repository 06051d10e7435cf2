import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { Task } from './tasks/task.ts'

export interface SupernodeState {
  tasks: () => Iterable<Task>
  peerCount: () => number
  waiters?: () => number
}

export interface SupernodeMetricsInit {
  /** The supernode's version, the `version` label of `shoal_supernode_build_info`. @default '0.0.0' */
  version?: string
}

/** The supernode's own metrics (the piece server adds `shoal_supernode_upload_*`). */
export class SupernodeMetrics {
  readonly sourceBytes: Counter
  readonly sourceFetches: Counter<'result'>
  readonly sourceFetchDuration: Histogram<'result'>
  readonly registrations: Counter<'outcome'>
  readonly scheduleRequests: Counter
  readonly assignments: Counter<'source'>
  /** Seconds one scheduling decision took (choosing pieces and parents for one request, one pass). */
  readonly scheduleDuration: Histogram
  /** Long polls waiting for pieces now. */
  readonly scheduleWaiters: Gauge
  readonly tasks: Gauge<'state'>
  readonly peers: Gauge
  /** Seconds piece uploads waited for the --upload-rate token bucket (direction="upload"). */
  readonly rateLimitedSeconds: Counter<'direction'>

  constructor (registry: Registry, init: SupernodeMetricsInit = {}) {
    const registers = [registry]
    new Gauge({ name: 'shoal_supernode_build_info', help: 'Always 1; the supernode\'s version and the Node.js version it runs on, as labels', labelNames: ['version', 'node_version'], registers })
      .set({ version: init.version ?? '0.0.0', node_version: process.version }, 1)
    this.sourceBytes = new Counter({ name: 'shoal_supernode_source_bytes_total', help: 'Bytes fetched from sources (origins)', registers })
    this.sourceFetches = new Counter({ name: 'shoal_supernode_source_fetches_total', help: 'Source fetches, by result (ok, http_error, network_error, digest_mismatch, refused, too_large)', labelNames: ['result'], registers })
    this.sourceFetchDuration = new Histogram({ name: 'shoal_supernode_source_fetch_duration_seconds', help: 'Time to fetch a whole task from its source', labelNames: ['result'], buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300], registers })
    this.registrations = new Counter({ name: 'shoal_supernode_task_registrations_total', help: 'Task registrations by daemons, by outcome (new: the source is fetched; cached: already held or in flight; failed)', labelNames: ['outcome'], registers })
    this.scheduleRequests = new Counter({ name: 'shoal_supernode_schedule_requests_total', help: 'Schedule (piece task) requests answered', registers })
    this.rateLimitedSeconds = new Counter({ name: 'shoal_supernode_rate_limited_seconds_total', help: 'Seconds transfers waited for the rate limit, by direction (upload: --upload-rate); summed over concurrent transfers, so it may grow faster than the clock', labelNames: ['direction'], registers })
    this.rateLimitedSeconds.inc({ direction: 'upload' }, 0)
    this.assignments = new Counter({ name: 'shoal_supernode_piece_assignments_total', help: 'Pieces handed out, by the kind of their first source (peer or supernode)', labelNames: ['source'], registers })
    this.scheduleDuration = new Histogram({ name: 'shoal_supernode_schedule_duration_seconds', help: 'Time one scheduling decision took: choosing the pieces and parents for one schedule request, one pass of its long poll', buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05], registers })
    const state = (): SupernodeState | undefined => this.state
    this.scheduleWaiters = new Gauge({
      name: 'shoal_supernode_schedule_waiters',
      help: 'Schedule requests long-polling for pieces now',
      registers,
      collect () { this.set(state()?.waiters?.() ?? 0) }
    })
    this.tasks = new Gauge({
      name: 'shoal_supernode_tasks',
      help: 'Tasks known, by state',
      labelNames: ['state'],
      registers,
      collect () {
        const counts = { running: 0, success: 0, failed: 0 }
        for (const task of state()?.tasks() ?? []) {
          counts[task.state]++
        }
        for (const [state, n] of Object.entries(counts)) {
          this.set({ state }, n)
        }
      }
    })
    this.peers = new Gauge({
      name: 'shoal_supernode_peers',
      help: 'Peers known (registered and not departed)',
      registers,
      collect () { this.set(state()?.peerCount() ?? 0) }
    })
  }

  private state?: SupernodeState

  /** Where the gauges read their values at scrape time. */
  observe (state: SupernodeState): void {
    this.state = state
  }
}
