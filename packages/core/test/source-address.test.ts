import { Readable } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { SourceRefusedError, SourceTooLargeError, SourceUnavailableError } from '../src/index.ts'
import { createGuardedLookup, isPublicAddress, type ResolveAll } from '../src/source/address.ts'
import { SourceAllowlist } from '../src/source/allowlist.ts'
import { FetchSlots, guardBody } from '../src/source/guarded-body.ts'

describe('isPublicAddress', () => {
  it.each([
    // public
    ['8.8.8.8', true], ['1.1.1.1', true], ['93.184.216.34', true], ['100.63.255.255', true], ['100.128.0.0', true],
    ['172.15.255.255', true], ['172.32.0.0', true], ['192.169.0.1', true], ['198.17.255.255', true], ['198.20.0.0', true],
    ['2001:4860:4860::8888', true], ['2606:4700:4700::1111', true], ['::ffff:8.8.8.8', true], ['64:ff9b::808:808', true], ['2002:808:808::1', true],
    // not public
    ['0.0.0.0', false], ['0.1.2.3', false], ['10.0.0.1', false], ['10.255.255.255', false], ['100.64.0.1', false], ['100.127.255.254', false],
    ['127.0.0.1', false], ['127.255.255.254', false], ['169.254.169.254', false], ['172.16.0.1', false], ['172.31.255.255', false],
    ['192.0.0.8', false], ['192.0.2.1', false], ['192.168.1.1', false], ['198.18.0.1', false], ['198.19.255.255', false],
    ['198.51.100.7', false], ['203.0.113.9', false], ['224.0.0.251', false], ['239.255.255.250', false], ['240.0.0.1', false], ['255.255.255.255', false],
    ['::', false], ['::1', false], ['fc00::1', false], ['fd12:3456::1', false], ['fe80::1', false], ['fe80::1%eth0', false], ['febf::1', false],
    ['ff02::1', false], ['2001:db8::1', false], ['2001::1', false], ['100::1', false],
    // IPv4 inside IPv6: mapped (both notations), compatible, NAT64 and 6to4 forms of private addresses
    ['::ffff:127.0.0.1', false], ['::ffff:7f00:1', false], ['::ffff:169.254.169.254', false], ['::ffff:a9fe:a9fe', false], ['::127.0.0.1', false],
    ['64:ff9b::a9fe:a9fe', false], ['64:ff9b::10.0.0.1', false], ['2002:7f00:1::', false], ['2002:c0a8:101::1', false],
    // not an address at all
    ['localhost', false], ['', false], ['1.2.3', false], ['example.com', false]
  ])('%s is public: %s', (address, expected) => {
    expect(isPublicAddress(address)).toBe(expected)
  })
})

describe('SourceAllowlist', () => {
  const list = new SourceAllowlist(['https://registry.example.com', 'files.example.com:8080', 'mirror.example.com', 'http://127.0.0.1:5000', '[::1]:6000'])

  it.each([
    ['https://registry.example.com/v2/', true], ['https://REGISTRY.example.com:443/v2/', true], ['http://registry.example.com/v2/', false],
    ['https://registry.example.com:8443/v2/', false], ['http://files.example.com:8080/a', true], ['https://files.example.com:8080/a', true],
    ['http://files.example.com/a', false], ['http://mirror.example.com/a', true], ['https://mirror.example.com/a', true],
    ['http://mirror.example.com:81/a', false], ['http://127.0.0.1:5000/x', true], ['http://2130706433:5000/x', true], ['http://127.0.0.1:5001/x', false],
    ['http://[::1]:6000/x', true], ['http://evil.example.com/', false], ['http://registry.example.com.evil.com/', false]
  ])('%s allowed: %s', (url, expected) => {
    expect(list.allows(new URL(url))).toBe(expected)
  })

  it.each(['ftp://x', 'https://x/path', 'https://u:p@x', 'x y', 'http://x?q=1'])('refuses the entry %s', (entry) => {
    expect(() => new SourceAllowlist([entry])).toThrow(/--allow-source/)
  })
})

describe('createGuardedLookup', () => {
  const resolver = (addresses: string[]): ResolveAll => (_host, _opts, cb) => { cb(null, addresses.map(address => ({ address, family: address.includes(':') ? 6 : 4 }))) }
  const run = async (lookup: ReturnType<typeof createGuardedLookup>, host: string, all: boolean): Promise<unknown> =>
    new Promise((resolve, reject) => {
      lookup(host, { all }, (err: Error | null, address: unknown, family?: number) => {
        if (err != null) {
          reject(err)
        } else {
          resolve(all ? address : [address, family])
        }
      })
    })

  it('refuses a host that is not trusted when any address is private (rebinding)', async () => {
    const lookup = createGuardedLookup({ trusted: () => false, resolve: resolver(['93.184.216.34', '127.0.0.1']) })
    await expect(run(lookup, 'rebind.example', true)).rejects.toBeInstanceOf(SourceRefusedError)
    await expect(run(lookup, 'rebind.example', false)).rejects.toThrow(/127\.0\.0\.1.*not a public address/)
  })

  it('passes public answers and trusted hosts through, in both callback forms', async () => {
    const pub = createGuardedLookup({ trusted: () => false, resolve: resolver(['93.184.216.34']) })
    expect(await run(pub, 'example.com', true)).toEqual([{ address: '93.184.216.34', family: 4 }])
    expect(await run(pub, 'example.com', false)).toEqual(['93.184.216.34', 4])
    const trusted = createGuardedLookup({ trusted: h => h === 'registry.local', resolve: resolver(['10.0.0.5']) })
    expect(await run(trusted, 'registry.local', false)).toEqual(['10.0.0.5', 4])
  })
})

describe('guardBody', () => {
  const read = async (body: Readable): Promise<Buffer> => {
    const chunks: Buffer[] = []
    for await (const c of body) {
      chunks.push(c as Buffer)
    }
    return Buffer.concat(chunks)
  }

  it('cuts off a body longer than its Content-Length, and frees the slot', async () => {
    let closed = 0
    const body = guardBody(Readable.from([Buffer.alloc(6), Buffer.alloc(6)]), { declaredLength: 10, maxBytes: 100, label: 'x', onClose: () => { closed++ } })
    await expect(read(body)).rejects.toBeInstanceOf(SourceUnavailableError)
    await new Promise(resolve => setImmediate(resolve))
    expect(closed).toBe(1)
  })

  it('cuts off a body past the cap when no length was announced', async () => {
    const body = guardBody(Readable.from([Buffer.alloc(60), Buffer.alloc(60)]), { declaredLength: null, maxBytes: 100, label: 'x', onClose: () => {} })
    await expect(read(body)).rejects.toBeInstanceOf(SourceTooLargeError)
  })

  it('passes a body within its length unchanged', async () => {
    const body = guardBody(Readable.from([Buffer.from('hello '), Buffer.from('world')]), { declaredLength: 11, maxBytes: 11, label: 'x', onClose: () => {} })
    expect((await read(body)).toString()).toBe('hello world')
  })
})

describe('FetchSlots', () => {
  it('hands out at most max slots, in order, and a waiter gives up on its signal', async () => {
    const slots = new FetchSlots(2)
    const a = await slots.acquire(AbortSignal.timeout(1_000))
    await slots.acquire(AbortSignal.timeout(1_000))
    const order: string[] = []
    const c = slots.acquire(AbortSignal.timeout(1_000)).then(r => { order.push('c'); return r })
    const controller = new AbortController()
    const d = slots.acquire(controller.signal)
    const e = slots.acquire(AbortSignal.timeout(1_000)).then(r => { order.push('e'); return r })
    controller.abort(new Error('gave up'))
    await expect(d).rejects.toThrow('gave up')
    expect(slots.inUse).toBe(2)
    a()
    a() // a second release is a no-op
    ;(await c)()
    await e
    expect(order).toEqual(['c', 'e'])
    expect(slots.inUse).toBe(2)
  })
})
