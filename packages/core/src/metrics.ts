import { collectDefaultMetrics, Registry } from 'prom-client'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** Where a downloaded byte came from: the values of the `source` label. */
export const BYTE_SOURCES = ['origin', 'supernode', 'peer'] as const
export type ByteSource = typeof BYTE_SOURCES[number]

export interface CreateMetricsOptions {
  /** Also export the Node.js process metrics (heap, event loop lag, fds). @default true */
  processMetrics?: boolean
  /** Prefix for the process metrics. */
  prefix?: string
}

/** prom-client default metrics left out of every registry (see {@link createMetricsRegistry}). */
const REDUNDANT_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']

/**
 * Each component owns a registry instead of using prom-client's global one, so two
 * components in one process (tests, the demo) never mix their numbers.
 */
export function createMetricsRegistry (options: CreateMetricsOptions = {}): Registry {
  const registry = new Registry()

  if (options.processMetrics !== false) {
    const prefix = options.prefix ?? ''
    collectDefaultMetrics({ register: registry, prefix })
    // gauges named like counters, which `promtool check metrics` rejects; each is the sum
    // over `type` of the same name without `_total` (sum(nodejs_active_handles))
    for (const name of REDUNDANT_DEFAULT_METRICS) {
      registry.removeSingleMetric(`${prefix}${name}`)
    }
  }

  return registry
}

/** Answers `GET /metrics` in the Prometheus text format. */
export async function serveMetrics (registry: Registry, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await registry.metrics()
  res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(body) })
  res.end(body)
}
