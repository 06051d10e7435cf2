import { connect, type LookupFunction, type Socket } from 'node:net'
import { ProxyTargetRefusedError } from '../errors.ts'
import { pipeline } from 'node:stream/promises'
import type { Target } from './access.ts'
import type { Duplex } from 'node:stream'

export interface TunnelOptions {
  connectTimeout: number
  idleTimeout: number
  /** Resolves the target's name (for a remote peer: one that refuses host-local addresses). @default dns.lookup */
  lookup?: LookupFunction
  /** Called once the tunnel is closed either way, with why when it failed. */
  onClose: (err?: Error) => void
}

/**
 * Answers a CONNECT with a plain TCP tunnel to `target`: bytes pass untouched both
 * ways (the client's TLS ends at the real server, with its real certificate). 502
 * when the target cannot be reached in time; closed when idle for `idleTimeout`.
 */
export function openTunnel (client: Duplex, head: Buffer, target: Target, options: TunnelOptions): void {
  const upstream: Socket = connect({ host: target.host, port: target.port, ...(options.lookup != null ? { lookup: options.lookup } : {}) })
  let connected = false
  let closed = false
  const close = (err?: Error): void => {
    if (closed) {
      return
    }
    closed = true
    clearTimeout(timer)
    upstream.destroy()
    client.destroy()
    options.onClose(err)
  }
  const timer = setTimeout(() => { upstream.destroy(new Error(`no connection to ${target.host}:${target.port} within ${options.connectTimeout} ms`)) }, options.connectTimeout)
  client.on('error', (err) => { close(err) })
  client.on('close', () => { if (!connected) { close() } })
  upstream.once('error', (err) => {
    if (!connected && !closed) {
      clearTimeout(timer)
      closed = true
      upstream.destroy()
      const body = `cannot reach ${target.host}:${target.port}: ${err.message}\n`
      const status = err instanceof ProxyTargetRefusedError ? '403 Forbidden' : '502 Bad Gateway'
      client.end(`HTTP/1.1 ${status}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
      options.onClose(err)
      return
    }
    close(err)
  })
  upstream.once('connect', () => {
    if (closed) {
      return
    }
    connected = true
    clearTimeout(timer)
    const idle = (): void => { close(new Error(`tunnel idle for ${options.idleTimeout} ms`)) }
    upstream.setTimeout(options.idleTimeout, idle)
    if ('setTimeout' in client && typeof client.setTimeout === 'function') {
      (client as Socket).setTimeout(options.idleTimeout, idle)
    }
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.byteLength > 0) {
      upstream.write(head)
    }
    // each direction ends the other's writable side when its reader ends (half-close),
    // and the tunnel is gone once both have
    let ended = 0
    const done = (): void => {
      ended++
      if (ended === 2) {
        close()
      }
    }
    pipeline(client, upstream).then(done, (err: Error) => { close(err) })
    pipeline(upstream, client).then(done, (err: Error) => { close(err) })
  })
}
