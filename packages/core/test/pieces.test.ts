import { describe, expect, it } from 'vitest'
import { DEFAULT_PIECE_SIZE, MAX_PIECE_SIZE, MiB, pieceCount, pieceRange, pieceSizeFor, taskIdFor } from '../src/index.ts'

describe('pieceSizeFor', () => {
  it('uses 4 MiB up to 200 MiB and when the length is unknown', () => {
    expect(pieceSizeFor(null)).toBe(DEFAULT_PIECE_SIZE)
    expect(pieceSizeFor(1)).toBe(4 * MiB)
    expect(pieceSizeFor(200 * MiB)).toBe(4 * MiB)
  })

  it('grows a MiB per 100 MiB above that', () => {
    expect(pieceSizeFor(200 * MiB + 1)).toBe(4 * MiB)
    expect(pieceSizeFor(300 * MiB)).toBe(5 * MiB)
    expect(pieceSizeFor(1000 * MiB)).toBe(12 * MiB)
  })

  it('never exceeds 15 MiB', () => {
    expect(pieceSizeFor(1300 * MiB)).toBe(MAX_PIECE_SIZE)
    expect(pieceSizeFor(100 * 1024 * MiB)).toBe(MAX_PIECE_SIZE)
  })
})

describe('piece ranges', () => {
  it('cuts content into full pieces and a short last one', () => {
    const len = 10 * MiB + 5
    expect(pieceCount(len, 4 * MiB)).toBe(3)
    expect(pieceRange(0, len, 4 * MiB)).toEqual({ num: 0, offset: 0, length: 4 * MiB })
    expect(pieceRange(2, len, 4 * MiB)).toEqual({ num: 2, offset: 8 * MiB, length: 2 * MiB + 5 })
  })

  it('gives empty content no pieces', () => {
    expect(pieceCount(0, 4 * MiB)).toBe(0)
  })

  it('refuses pieces outside the content', () => {
    expect(() => pieceRange(3, 10 * MiB, 4 * MiB)).toThrow(RangeError)
    expect(() => pieceRange(-1, 10 * MiB, 4 * MiB)).toThrow(RangeError)
    expect(() => pieceRange(0.5, 10 * MiB, 4 * MiB)).toThrow(RangeError)
  })
})

describe('taskIdFor', () => {
  const digest = `sha256:${'b'.repeat(64)}`

  it('keys content with a digest by the digest alone', () => {
    const a = taskIdFor({ url: 'http://r1/v2/a/blobs/x', digest })
    expect(a).toMatch(/^[a-f0-9]{64}$/)
    expect(taskIdFor({ url: 'http://r2/v2/b/blobs/y', digest })).toBe(a)
  })

  it('keys other content by its URL', () => {
    expect(taskIdFor({ url: 'http://h/f' })).not.toBe(taskIdFor({ url: 'http://h/g' }))
    expect(taskIdFor({ url: 'http://h/f' })).not.toBe(taskIdFor({ url: 'http://h/f', digest }))
  })
})
