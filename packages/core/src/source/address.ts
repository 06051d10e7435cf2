import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns'
import { BlockList, isIPv4, isIPv6, type LookupFunction } from 'node:net'
import { SourceRefusedError } from '../errors.ts'

/**
 * IPv4 ranges that are not public unicast: a fetch there reaches this host, its network
 * or something that is not the internet (cloud metadata lives at 169.254.169.254).
 */
const PRIVATE_V4: Array<[string, number]> = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // RFC 1918
  ['100.64.0.0', 10], // CGNAT, RFC 6598
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12], // RFC 1918
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // TEST-NET-1
  ['192.88.99.0', 24], // 6to4 relay anycast (deprecated)
  ['192.168.0.0', 16], // RFC 1918
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // TEST-NET-2
  ['203.0.113.0', 24], // TEST-NET-3
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4] // reserved, and 255.255.255.255
]

/** Inside global unicast (2000::/3), the parts that are not the public internet. */
const PRIVATE_V6_IN_GLOBAL: Array<[string, number]> = [
  ['2001::', 23], // IETF protocol assignments, Teredo
  ['2001:db8::', 32], // documentation
  ['3fff::', 20] // documentation (RFC 9637)
]

const privateV4 = new BlockList()
for (const [net, prefix] of PRIVATE_V4) {
  privateV4.addSubnet(net, prefix, 'ipv4')
}
const globalV6 = new BlockList()
globalV6.addSubnet('2000::', 3, 'ipv6')
const privateV6 = new BlockList()
for (const [net, prefix] of PRIVATE_V6_IN_GLOBAL) {
  privateV6.addSubnet(net, prefix, 'ipv6')
}

/**
 * The eight 16-bit groups of an IPv6 address (`::` expanded, a trailing dotted quad
 * folded in, a zone id dropped), or undefined when it is not one.
 */
function ipv6Groups (address: string): number[] | undefined {
  const bare = address.replace(/%.*$/, '')
  if (!isIPv6(bare)) {
    return undefined
  }
  let text = bare
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (quad?.[1] != null) {
    const [a = 0, b = 0, c = 0, d = 0] = quad[1].split('.').map(Number)
    text = `${text.slice(0, -quad[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [head = '', tail] = text.split('::')
  const parse = (part: string): number[] => part === '' ? [] : part.split(':').map(g => parseInt(g, 16))
  const left = parse(head)
  const right = tail == null ? [] : parse(tail)
  const zeros = tail == null ? 0 : 8 - left.length - right.length
  const groups = [...left, ...new Array<number>(zeros).fill(0), ...right]
  return groups.length === 8 ? groups : undefined
}

const v4From = (hi: number, lo: number): string => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`

/**
 * Whether an IP address is public unicast, the only kind a fetch that was not
 * configured (a redirect to some other host) may reach. False for loopback, RFC 1918,
 * CGNAT, link-local (cloud metadata), multicast, reserved and documentation ranges,
 * IPv6 ::1, fc00::/7, fe80::/10 and IPv4 addresses embedded in IPv6 (mapped, NAT64,
 * 6to4) that are any of those; false for anything that is not an IP address at all.
 */
export function isPublicAddress (address: string): boolean {
  if (isIPv4(address)) {
    return !privateV4.check(address, 'ipv4')
  }
  const g = ipv6Groups(address)
  if (g == null) {
    return false
  }
  // IPv4-mapped ::ffff:a.b.c.d and NAT64 64:ff9b::a.b.c.d reach the IPv4 address inside
  if ((g.slice(0, 5).every(x => x === 0) && g[5] === 0xffff) || (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every(x => x === 0))) {
    return isPublicAddress(v4From(g[6] ?? 0, g[7] ?? 0))
  }
  // 6to4 2002:AABB:CCDD::/48 routes to the IPv4 address AA.BB.CC.DD
  if (g[0] === 0x2002) {
    return isPublicAddress(v4From(g[1] ?? 0, g[2] ?? 0))
  }
  const canonical = g.map(x => x.toString(16)).join(':')
  // only global unicast is public: this excludes ::, ::1, fc00::/7, fe80::/10, ff00::/8 and the rest
  return globalV6.check(canonical, 'ipv6') && !privateV6.check(canonical, 'ipv6')
}

/** Resolves every address of a host name, as `dns.lookup` with `all: true` does. */
export type ResolveAll = (hostname: string, options: LookupAllOptions, callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void) => void

export const defaultResolve: ResolveAll = (hostname, options, callback) => { dnsLookup(hostname, options, callback) }

export interface GuardedLookupOptions {
  /** Host names resolved without the check: configured upstreams. */
  trusted: (hostname: string) => boolean
  /** @default dns.lookup */
  resolve?: ResolveAll
}

/**
 * A `lookup` for `net.connect` that refuses to connect a host name that is not trusted
 * to any non-public address. The fetch checked the redirect target's addresses before
 * connecting; this closes the gap where DNS answers differently the second time
 * (rebinding). IP literals never reach a lookup: the fetch checks those itself.
 */
export function createGuardedLookup (options: GuardedLookupOptions): LookupFunction {
  const resolve = options.resolve ?? defaultResolve
  return (hostname, lookupOptions, callback) => {
    resolve(hostname, { ...lookupOptions, all: true }, (err, addresses) => {
      if (err != null) {
        callback(err, '', 0)
        return
      }
      const bad = options.trusted(hostname) ? undefined : addresses.find(a => !isPublicAddress(a.address))
      if (bad != null || addresses.length === 0) {
        const refusal = new SourceRefusedError(hostname, `refused to connect to ${hostname}: it resolves to ${bad?.address ?? 'no address'}, which is not a public address (allow it with --allow-source ${hostname} or --allow-private-redirects)`)
        callback(refusal as unknown as NodeJS.ErrnoException, '', 0)
        return
      }
      if (lookupOptions.all === true) {
        (callback as unknown as (err: null, addresses: LookupAddress[]) => void)(null, addresses)
      } else {
        const first = addresses[0] as LookupAddress
        callback(null, first.address, first.family)
      }
    })
  }
}
