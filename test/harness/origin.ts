import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface OriginFile {
  data: Buffer
  /** Serve these bytes instead of `data` (a corrupt or tampered origin). */
  serve?: Buffer
  /** Answer with this status and no body. */
  status?: number
  /** Stream without Content-Length (chunked). */
  chunked?: boolean
  /** Pause before the body, in ms. */
  delayMs?: number
  /** Send the headers at once and the body only once this settles: the test decides when the content arrives. */
  holdBody?: Promise<unknown>
  /** The first this many GETs answer `failStatus` (default 503) with no body. */
  failFirst?: number
  failStatus?: number
  /** The first GET sends only this many bytes of its body, then nothing more (a stalled source). */
  stallFirstAfter?: number
}

export interface TestOrigin {
  url: string
  files: Map<string, OriginFile>
  /** GET requests per path */
  gets: Map<string, number>
  /** Range headers received, per path */
  ranges: Map<string, string[]>
  /** Request headers of every GET, per path */
  headers: Map<string, IncomingHttpHeaders[]>
  add(path: string, data: Buffer, extra?: Omit<OriginFile, 'data'>): { url: string, digest: string }
  stop(): Promise<void>
}

export const sha256 = (data: Uint8Array): string => `sha256:${createHash('sha256').update(data).digest('hex')}`

/**
 * An HTTP origin for tests of one module or one process: serves byte buffers,
 * counts requests, honours single Range requests, and can be told to misbehave.
 */
export async function startTestOrigin (): Promise<TestOrigin> {
  const files = new Map<string, OriginFile>()
  const gets = new Map<string, number>()
  const ranges = new Map<string, string[]>()
  const headers = new Map<string, IncomingHttpHeaders[]>()
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname
    const nth = req.method === 'GET' ? (gets.get(path) ?? 0) + 1 : 0
    if (req.method === 'GET') {
      gets.set(path, nth)
      headers.set(path, [...headers.get(path) ?? [], req.headers])
    }
    const file = files.get(path)
    if (file == null) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"not here"}]}')
      return
    }
    if (file.status != null || (nth > 0 && nth <= (file.failFirst ?? 0))) {
      res.writeHead(file.status ?? file.failStatus ?? 503).end()
      return
    }
    let body = file.serve ?? file.data
    let status = 200
    const out: Record<string, string> = { 'content-type': 'application/octet-stream' }
    const range = req.headers.range
    if (range != null) {
      ranges.set(path, [...ranges.get(path) ?? [], range])
      const start = Number(/^bytes=(\d+)-$/.exec(range)?.[1])
      if (Number.isInteger(start) && start < body.byteLength) {
        out['content-range'] = `bytes ${start}-${body.byteLength - 1}/${body.byteLength}`
        body = body.subarray(start)
        status = 206
      }
    }
    if (file.chunked !== true) {
      out['content-length'] = String(body.byteLength)
    }
    res.writeHead(status, out)
    const send = (): void => {
      if (req.method === 'HEAD') {
        res.end()
        return
      }
      if (nth === 1 && file.stallFirstAfter != null) {
        // the headers and a prefix, then silence until the client gives up or the origin stops
        res.write(body.subarray(0, file.stallFirstAfter))
        return
      }
      // in a few writes, so the receiver sees a stream rather than one chunk
      const step = Math.max(1, Math.ceil(body.byteLength / 4))
      for (let i = 0; i < body.byteLength; i += step) {
        res.write(body.subarray(i, i + step))
      }
      res.end()
    }
    if (file.holdBody != null) {
      res.flushHeaders()
      file.holdBody.then(send, send)
    } else if (file.delayMs != null) {
      setTimeout(send, file.delayMs)
    } else {
      send()
    }
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    files,
    gets,
    ranges,
    headers,
    add (path, data, extra = {}) {
      files.set(path, { data, ...extra })
      return { url: `${url}${path}`, digest: sha256(data) }
    },
    async stop () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  }
}
