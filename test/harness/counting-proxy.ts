import { once } from 'node:events'
import { createServer } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { request } from 'undici'
import type { AddressInfo } from 'node:net'

export interface CountingProxy {
  url: string
  /** GETs of each blob digest that reached the registry */
  blobGets: Map<string, number>
  /** Every request, as "METHOD /path" */
  requests: string[]
  stop(): Promise<void>
}

/**
 * Sits in front of a registry and counts what reaches it, so a test can assert that
 * the registry served each layer blob at most once.
 */
export interface CountingProxyOptions {
  /** Sends blob GET bodies at about this rate, so a download stays in flight a while. @default unthrottled */
  blobBytesPerSecond?: number
}

/** Passes chunks on at about `bytesPerSecond`, in 64 KiB slices. */
function throttle (bytesPerSecond: number): (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
  return async function * (source) {
    for await (const chunk of source) {
      for (let i = 0; i < chunk.byteLength; i += 65_536) {
        const slice = chunk.subarray(i, i + 65_536)
        await new Promise(resolve => setTimeout(resolve, 1000 * slice.byteLength / bytesPerSecond))
        yield slice
      }
    }
  }
}

export async function startCountingProxy (target: string, options: CountingProxyOptions = {}): Promise<CountingProxy> {
  const blobGets = new Map<string, number>()
  const requests: string[] = []
  const server = createServer((req, res) => {
    const path = req.url ?? '/'
    requests.push(`${req.method} ${path}`)
    const blob = /\/blobs\/(sha256:[a-f0-9]{64})/.exec(path)?.[1]
    if (blob != null && req.method === 'GET') {
      blobGets.set(blob, (blobGets.get(blob) ?? 0) + 1)
    }
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(req.headers)) {
      if (typeof v === 'string' && !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k)) {
        headers[k] = v
      }
    }
    request(`${target}${path}`, { method: req.method as 'GET', headers, body: req.method === 'GET' || req.method === 'HEAD' ? null : req, signal: AbortSignal.timeout(120_000) })
      .then(async (upstream) => {
        const out: Record<string, string | string[]> = {}
        for (const [k, v] of Object.entries(upstream.headers)) {
          if (v != null && !['connection', 'transfer-encoding', 'keep-alive'].includes(k)) {
            out[k] = v
          }
        }
        res.writeHead(upstream.statusCode, out)
        if (blob != null && req.method === 'GET' && options.blobBytesPerSecond != null) {
          await pipeline(upstream.body, throttle(options.blobBytesPerSecond), res)
        } else {
          await pipeline(upstream.body, res)
        }
      })
      .catch(() => { res.destroy() })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    blobGets,
    requests,
    async stop () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  }
}
