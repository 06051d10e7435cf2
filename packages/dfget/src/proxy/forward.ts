import { pipeline } from 'node:stream/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'

/** Hop-by-hop headers (RFC 9110 7.6.1) and the proxy's own: never forwarded either way. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host'])

function endToEnd (headers: IncomingMessage['headers'] | Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const listed = new Set(String(headers.connection ?? '').toLowerCase().split(',').map(s => s.trim()).filter(s => s !== ''))
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value != null && !HOP_BY_HOP.has(name) && !listed.has(name)) {
      out[name] = value
    }
  }
  return out
}

export interface ForwardOptions {
  dispatcher: Dispatcher
  signal: AbortSignal
}

/**
 * Forwards a plain-HTTP proxy request for a host the proxy does not intercept, and
 * streams the answer back. Redirects are the client's business, not followed here.
 *
 * @throws {Error} when the target cannot be reached or stops answering before the response head
 */
export async function forwardRequest (req: IncomingMessage, res: ServerResponse, url: URL, options: ForwardOptions): Promise<void> {
  const method = req.method ?? 'GET'
  const hasBody = !(method === 'GET' || method === 'HEAD') && (req.headers['content-length'] != null || req.headers['transfer-encoding'] != null)
  const upstream = await options.dispatcher.request({
    origin: url.origin,
    path: `${url.pathname}${url.search}`,
    method: method as Dispatcher.HttpMethod,
    headers: endToEnd(req.headers),
    body: hasBody ? req : null,
    signal: options.signal
  })
  try {
    res.writeHead(upstream.statusCode, endToEnd(upstream.headers))
    await pipeline(upstream.body, res, { signal: options.signal })
  } finally {
    upstream.body.destroy()
  }
}
