import { HttpError } from '@shoal/core'
import { describe, expect, it } from 'vitest'
import { checkDigest, checkName, parseReference } from '../src/mirror/oci-request.ts'
import { parseRange, resolveRange } from '../src/mirror/range.ts'

const HEX = 'a'.repeat(64)

function codeOf (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(HttpError)
    return `${(err as HttpError).status} ${(err as HttpError).code}`
  }
  return 'accepted'
}

describe('registry request parsing', () => {
  it('accepts repository names of the distribution grammar, up to 255 characters', () => {
    for (const name of ['alpine', 'library/alpine', 'a/b/c', 'my-org/app_1', 'x__y', 'a.b-c/d', 'a--b', 'a'.repeat(255)]) {
      expect(checkName(name)).toBe(name)
    }
  })

  it('refuses malformed and overlong names with 400 NAME_INVALID', () => {
    for (const name of ['', 'Alpine', 'a//b', '/a', 'a/', '-a', 'a_', 'a___b', 'a/../b', 'a b', 'a%2fb', 'a'.repeat(256), 'a/'.repeat(3000) + 'a']) {
      expect(codeOf(() => checkName(name)), name.slice(0, 40)).toBe('400 NAME_INVALID')
    }
  })

  it('accepts sha256 and sha512 digests only, with their exact hex length', () => {
    expect(checkDigest(`sha256:${HEX}`)).toBe(`sha256:${HEX}`)
    expect(checkDigest(`sha512:${'b'.repeat(128)}`)).toBe(`sha512:${'b'.repeat(128)}`)
    for (const digest of [`sha256:${HEX.slice(1)}`, `sha256:${HEX}a`, `sha256:${HEX.toUpperCase()}`, `md5:${HEX}`, HEX, `sha256:${'g'.repeat(64)}`, `sha512:${HEX}`, 'sha256:']) {
      expect(codeOf(() => checkDigest(digest)), digest).toBe('400 DIGEST_INVALID')
    }
  })

  it('tells tags from digests, and refuses malformed tags with 400 TAG_INVALID', () => {
    expect(parseReference('v1.2_3-rc')).toEqual({ kind: 'tag', tag: 'v1.2_3-rc' })
    expect(parseReference('_x')).toEqual({ kind: 'tag', tag: '_x' })
    expect(parseReference(`sha256:${HEX}`)).toEqual({ kind: 'digest', digest: `sha256:${HEX}` })
    expect(parseReference('a'.repeat(128))).toEqual({ kind: 'tag', tag: 'a'.repeat(128) })
    for (const tag of ['a'.repeat(129), '.hidden', '-x', 'a/b', 'a b', 'ä']) {
      expect(codeOf(() => parseReference(tag)), tag).toBe('400 TAG_INVALID')
    }
    expect(codeOf(() => parseReference('sha256:zzz'))).toBe('400 DIGEST_INVALID')
  })
})

describe('Range headers', () => {
  it('parses one byte range, a suffix, and several ranges (answered whole)', () => {
    expect(parseRange(undefined)).toEqual({ kind: 'none' })
    expect(parseRange('bytes=0-99')).toEqual({ kind: 'from', first: 0, last: 99 })
    expect(parseRange('bytes=100-')).toEqual({ kind: 'from', first: 100 })
    expect(parseRange('bytes=-5')).toEqual({ kind: 'suffix', suffix: 5 })
    expect(parseRange('bytes=0-1, 5-6')).toEqual({ kind: 'multi' })
  })

  it('refuses what is not a byte range with 400 RANGE_INVALID', () => {
    for (const header of ['bytes=', 'bytes=-', 'bytes=a-b', 'bytes=5-2', 'items=0-1', '0-1', 'bytes=0-1,', 'bytes=99999999999999999999-', 'bytes=1-2-3', `bytes=${'0-1,'.repeat(400)}0-1`]) {
      expect(codeOf(() => parseRange(header)), header.slice(0, 40)).toBe('400 RANGE_INVALID')
    }
    expect(codeOf(() => parseRange(['bytes=0-1', 'bytes=2-3']))).toBe('400 RANGE_INVALID')
  })

  it('places a range in content of a known length, or says none of it exists', () => {
    expect(resolveRange({ kind: 'from', first: 0, last: 99 }, 1000)).toEqual({ start: 0, end: 99 })
    expect(resolveRange({ kind: 'from', first: 900, last: 5000 }, 1000)).toEqual({ start: 900, end: 999 })
    expect(resolveRange({ kind: 'from', first: 10 }, 1000)).toEqual({ start: 10, end: 999 })
    expect(resolveRange({ kind: 'suffix', suffix: 10 }, 1000)).toEqual({ start: 990, end: 999 })
    expect(resolveRange({ kind: 'suffix', suffix: 5000 }, 1000)).toEqual({ start: 0, end: 999 })
    expect(resolveRange({ kind: 'from', first: 1000 }, 1000)).toBeUndefined()
    expect(resolveRange({ kind: 'suffix', suffix: 0 }, 1000)).toBeUndefined()
    expect(resolveRange({ kind: 'from', first: 0 }, 0)).toBeUndefined()
  })
})
