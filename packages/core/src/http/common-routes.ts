import { API_PREFIX } from '../protocol/api.ts'
import { serveMetrics } from '../metrics.ts'
import { sendJson, type Route } from './server.ts'
import type { Registry } from 'prom-client'

/** `/healthz`, `/metrics` and `/api/v1/status`: what every Shoal HTTP server answers. */
export function commonRoutes (options: { registry: Registry, status: () => unknown | Promise<unknown> }): Route[] {
  return [
    {
      methods: ['GET', 'HEAD'],
      pattern: /^\/healthz$/,
      handler: async ({ res }) => { sendJson(res, 200, { status: 'ok' }) }
    },
    {
      methods: ['GET'],
      pattern: /^\/metrics$/,
      handler: async ({ req, res }) => { await serveMetrics(options.registry, req, res) }
    },
    {
      methods: ['GET'],
      pattern: new RegExp(`^${API_PREFIX}/status$`),
      handler: async ({ res }) => { sendJson(res, 200, await options.status()) }
    }
  ]
}
