import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { DigestMismatchError, DigestVerifier, InvalidDigestError, isDigest, parseDigest } from '../src/index.ts'

const sha = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`

describe('parseDigest', () => {
  it('accepts sha256 and sha512 digests', () => {
    const d = sha('x')
    expect(parseDigest(d)).toEqual({ algorithm: 'sha256', hex: d.slice(7), value: d })
    expect(isDigest(`sha512:${'a'.repeat(128)}`)).toBe(true)
  })

  it.each([
    ['', 'empty'],
    ['sha256:abc', 'short'],
    [`sha256:${'A'.repeat(64)}`, 'upper case'],
    [`md5:${'a'.repeat(32)}`, 'unregistered algorithm'],
    [`sha512:${'a'.repeat(64)}`, 'wrong length for the algorithm'],
    [`sha256:${'a'.repeat(64)}/../x`, 'path characters']
  ])('rejects %j (%s) with InvalidDigestError', (value) => {
    expect(() => parseDigest(value)).toThrow(InvalidDigestError)
  })
})

describe('DigestVerifier', () => {
  it('verifies content streamed in chunks', () => {
    const v = new DigestVerifier(sha('hello world'))
    v.update(Buffer.from('hello '))
    v.update(Buffer.from('world'))
    expect(v.bytesHashed).toBe(11)
    expect(() => { v.verify() }).not.toThrow()
  })

  it('names both digests on a mismatch', () => {
    const v = new DigestVerifier(sha('hello'))
    v.update(Buffer.from('jello'))
    try {
      v.verify()
      expect.unreachable()
    } catch (err) {
      expect(err).toBeInstanceOf(DigestMismatchError)
      expect((err as DigestMismatchError).code).toBe('ERR_DIGEST_MISMATCH')
      expect((err as DigestMismatchError).actual).toBe(sha('jello'))
    }
  })
})
