import { describe, expect, it } from 'vitest'
import { errorCode, PieceTimeoutError } from '../src/index.ts'

describe('errorCode', () => {
  it('names every kind of error with a string', () => {
    expect(errorCode(new PieceTimeoutError('slow'))).toBe('ERR_PIECE_TIMEOUT')
    expect(errorCode(Object.assign(new Error('reset'), { code: 'ECONNRESET' }))).toBe('ECONNRESET')
    // AbortSignal.timeout() rejects with a DOMException whose code is the number 23
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError')
    expect(timeout.code).toBe(23)
    expect(errorCode(timeout)).toBe('TimeoutError')
    expect(errorCode(new TypeError('x'))).toBe('TypeError')
    expect(errorCode(new Error('plain'))).toBe('ERR_UNKNOWN')
    expect(errorCode('a string')).toBe('ERR_UNKNOWN')
    expect(errorCode(undefined)).toBe('ERR_UNKNOWN')
    expect(errorCode({ code: 'X'.repeat(100) })).toHaveLength(64)
  })
})
