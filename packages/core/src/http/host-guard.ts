import { isIP } from 'node:net'

/** Host names every local listener answers to, whatever it is configured with. */
const LOOPBACK = ['localhost', '127.0.0.1', '::1']

export interface HostGuardInit {
  /** The address the server listens on; allowed as a Host too when it is a specific IP (not 0.0.0.0 or ::). */
  listenHost: string
  /** Further names or addresses, without a port. @default [] */
  allowed?: readonly string[]
}

/** The host part of a Host header, lower-cased, without port, brackets or a trailing dot; undefined when malformed. */
export function hostOf (header: string | undefined): string | undefined {
  if (header == null || header === '' || header.length > 1024) {
    return undefined
  }
  const value = header.trim().toLowerCase()
  let host: string
  if (value.startsWith('[')) {
    const end = value.indexOf(']')
    if (end < 0 || (end + 1 < value.length && value[end + 1] !== ':')) {
      return undefined
    }
    host = value.slice(1, end)
  } else {
    const colon = value.indexOf(':')
    if (colon >= 0 && value.indexOf(':', colon + 1) >= 0) {
      // an unbracketed IPv6 address is not a valid Host
      return undefined
    }
    host = colon >= 0 ? value.slice(0, colon) : value
  }
  host = host.endsWith('.') ? host.slice(0, -1) : host
  return host === '' ? undefined : host
}

/**
 * Decides which Host headers a local listener answers: loopback names, its own listen
 * address when that is a specific IP, and names configured on purpose. A browser page
 * that rebinds its own DNS name to 127.0.0.1 still sends that name, and is refused.
 */
export function createHostGuard (init: HostGuardInit): (hostHeader: string | undefined) => boolean {
  const allowed = new Set(LOOPBACK)
  const listen = hostOf(init.listenHost.includes(':') && !init.listenHost.startsWith('[') ? `[${init.listenHost}]` : init.listenHost)
  if (listen != null && isIP(listen) !== 0 && listen !== '0.0.0.0' && listen !== '::') {
    allowed.add(listen)
  }
  for (const name of init.allowed ?? []) {
    const host = hostOf(name.includes(':') && !name.startsWith('[') && isIP(name) === 6 ? `[${name}]` : name)
    if (host != null) {
      allowed.add(host)
    }
  }
  return (hostHeader) => {
    const host = hostOf(hostHeader)
    return host != null && allowed.has(host)
  }
}
