import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns'
import { BlockList, isIP, isIPv4, type LookupFunction } from 'node:net'
import { ProxyCidrError, ProxyTargetRefusedError } from '../errors.ts'

/** Which peers may use the proxy: loopback always, and the `--proxy-allow` networks. */
export class PeerAccess {
  private readonly list = new BlockList()

  /** @param allow CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses; each must pass {@link parseCidr} */
  constructor (allow: readonly string[] = []) {
    this.list.addSubnet('127.0.0.0', 8, 'ipv4')
    this.list.addAddress('::1', 'ipv6')
    for (const entry of allow) {
      const { address, prefix, family } = parseCidr(entry)
      this.list.addSubnet(address, prefix, family)
    }
  }

  allows (remoteAddress: string | undefined): boolean {
    if (remoteAddress == null) {
      return false
    }
    const address = unmapped(remoteAddress)
    return this.list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6')
  }
}

/** `::ffff:10.1.2.3` (an IPv4 peer on a dual-stack socket) → `10.1.2.3` */
function unmapped (address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  return m?.[1] ?? address
}

/** True for an address on this host's loopback. */
export function isLoopbackAddress (address: string | undefined): boolean {
  if (address == null) {
    return false
  }
  const a = unmapped(address)
  return a === '::1' || (isIPv4(a) && a.startsWith('127.'))
}

/**
 * Parses `address/prefix` or a single address.
 *
 * @throws {ProxyCidrError} naming the problem when it is not one
 */
export function parseCidr (value: string): { address: string, prefix: number, family: 'ipv4' | 'ipv6' } {
  const [address = '', prefixText, ...rest] = value.split('/')
  const version = isIP(address)
  if (version === 0 || rest.length > 0) {
    throw new ProxyCidrError(`${JSON.stringify(value)} is not an IP address or CIDR (10.0.0.0/8, fd00::/8)`)
  }
  const max = version === 4 ? 32 : 128
  const prefix = prefixText == null ? max : Number(prefixText)
  if (!/^\d{1,3}$/.test(prefixText ?? String(max)) || prefix > max) {
    throw new ProxyCidrError(`${JSON.stringify(value)} has a prefix length outside 0-${max}`)
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' }
}

/** A proxy target: a host name or IP (IPv6 without brackets) and a port. */
export interface Target {
  host: string
  port: number
}

const HOST_RE = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/

/** Parses a CONNECT target, `host:port` or `[v6]:port`; undefined when it is not one. */
export function parseConnectTarget (value: string): Target | undefined {
  const m = /^(?:\[([0-9a-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/i.exec(value)
  if (m == null) {
    return undefined
  }
  const port = Number(m[3])
  const host = (m[1] ?? m[2] ?? '').toLowerCase()
  if (port < 1 || port > 65535 || host.length > 253) {
    return undefined
  }
  if (m[1] != null ? isIP(host) !== 6 : (isIP(host) !== 4 && !HOST_RE.test(host))) {
    return undefined
  }
  return { host, port }
}

/**
 * The name a registry has in image references, and so in the configured upstreams:
 * the host, with the port only when it is not the scheme's default.
 */
export function registryName (target: Target, defaultPort: number): string {
  const host = isIP(target.host) === 6 ? `[${target.host}]` : target.host
  return target.port === defaultPort ? host : `${host}:${target.port}`
}

/** A target this host's loopback answers by its name or address text. */
export function isLoopbackTarget (host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost') || isLoopbackAddress(host) || host === '0.0.0.0' || host === '::'
}

/**
 * Addresses a peer that is not on this host must not reach through the proxy: this
 * host's loopback (and the unspecified address, which reaches it) and link-local
 * (cloud metadata at 169.254.169.254). BlockList compares addresses, not their text:
 * `0:0:0:0:0:0:0:1` and `::ffff:7f00:1` match too.
 */
const HOST_LOCAL = new BlockList()
HOST_LOCAL.addSubnet('0.0.0.0', 8, 'ipv4')
HOST_LOCAL.addSubnet('127.0.0.0', 8, 'ipv4')
HOST_LOCAL.addSubnet('169.254.0.0', 16, 'ipv4')
HOST_LOCAL.addAddress('::', 'ipv6')
HOST_LOCAL.addAddress('::1', 'ipv6')
HOST_LOCAL.addSubnet('fe80::', 10, 'ipv6')

/** True for an IP address that is loopback, unspecified or link-local, however it is written. */
export function isHostLocalAddress (address: string): boolean {
  const bare = address.replace(/%.*$/, '')
  const version = isIP(bare)
  return version !== 0 && HOST_LOCAL.check(bare, version === 4 ? 'ipv4' : 'ipv6')
}

/** A target refused to remote peers by its text alone (a name for loopback, a host-local IP). */
export function isRemoteRefusedTarget (host: string): boolean {
  return isLoopbackTarget(host) || isHostLocalAddress(host)
}

/** Resolves every address of a host name, as `dns.lookup` with `all: true` does. */
export type ResolveAll = (hostname: string, options: LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void

const defaultResolve: ResolveAll = (hostname, options, callback) => { dnsLookup(hostname, options, callback) }

/**
 * A `lookup` for connections made for a remote peer: a name that resolves to any
 * host-local address (`127.1`, a DNS name for 127.0.0.1) is refused, and the connection
 * goes to an address that was checked (no second resolution to rebind). IP literals
 * never reach a lookup: they are checked with {@link isRemoteRefusedTarget} first.
 */
export function remotePeerLookup (resolve: ResolveAll = defaultResolve): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { ...options, all: true }, (err, addresses) => {
      if (err != null) {
        callback(err, '', 0)
        return
      }
      const bad = addresses.find(a => isHostLocalAddress(a.address))
      if (bad != null || addresses.length === 0) {
        const refusal = new ProxyTargetRefusedError(`${hostname} resolves to ${bad?.address ?? 'no address'}: loopback and link-local targets are for loopback peers only`)
        callback(refusal as unknown as NodeJS.ErrnoException, '', 0)
        return
      }
      if (options.all === true) {
        (callback as unknown as (err: null, addresses: LookupAddress[]) => void)(null, addresses)
      } else {
        const first = addresses[0] as LookupAddress
        callback(null, first.address, first.family)
      }
    })
  }
}
