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

/**
 * Each component owns a registry instead of using prom-client's global one, so two
 * components in one process (tests, the demo) never mix their numbers.
 */
export function createMetricsRegistry (options: CreateMetricsOptions = {}): Registry {
  const registry = new Registry()

  if (options.processMetrics !== false) {
    collectDefaultMetrics({ register: registry, prefix: options.prefix ?? '' })
  }

  return registry
}

/** Answers `GET /metrics` in the Prometheus text format. */
export async function serveMetrics (registry: Registry, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await registry.metrics()
  res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(body) })
  res.end(body)
}
