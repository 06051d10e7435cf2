import { HttpError } from '@shoal/core'

/**
 * `Range` headers on blob requests (RFC 9110 §14). One byte range is answered with a
 * 206; several ranges are answered with the whole body and a 200, which RFC 9110 allows
 * (a server may ignore Range) and which no registry client asks for anyway; a header that
 * is not a byte range at all gets a 400 RANGE_INVALID rather than being ignored, so a
 * client's mistake is seen.
 */

/** A parsed `Range` header, before the content's length is known. */
export type RangeRequest =
  | { kind: 'none' }
  /** Several ranges: answered with the whole body. */
  | { kind: 'multi' }
  /** `bytes=first-` or `bytes=first-last` */
  | { kind: 'from', first: number, last?: number }
  /** `bytes=-suffix`: the last `suffix` bytes */
  | { kind: 'suffix', suffix: number }

/** Longest Range header looked at: a range has two numbers, and nobody sends hundreds. */
const MAX_HEADER = 1024

const SPEC_RE = /^(\d*)-(\d*)$/

function invalid (header: string): HttpError {
  return new HttpError(400, 'RANGE_INVALID', `invalid Range header ${JSON.stringify(header.slice(0, 80))}: expected bytes=<first>-[<last>] or bytes=-<suffix length>`)
}

/**
 * @throws {HttpError} 400 RANGE_INVALID for anything but byte ranges
 */
export function parseRange (header: string | string[] | undefined): RangeRequest {
  if (header == null) {
    return { kind: 'none' }
  }
  if (Array.isArray(header) || header.length > MAX_HEADER) {
    throw invalid(String(header))
  }
  const match = /^bytes=(.+)$/i.exec(header.trim())
  if (match?.[1] == null) {
    throw invalid(header)
  }
  const specs = match[1].split(',').map(s => s.trim())
  const parsed = specs.map(spec => {
    const m = SPEC_RE.exec(spec)
    const first = m?.[1]
    const last = m?.[2]
    if (m == null || (first === '' && last === '') || !Number.isSafeInteger(Number(first)) || !Number.isSafeInteger(Number(last))) {
      throw invalid(header)
    }
    if (first === '') {
      return { kind: 'suffix', suffix: Number(last) } as const
    }
    if (last !== '' && Number(last) < Number(first)) {
      throw invalid(header)
    }
    return { kind: 'from', first: Number(first), ...(last !== '' ? { last: Number(last) } : {}) } as const
  })
  if (parsed.length > 1) {
    return { kind: 'multi' }
  }
  return parsed[0] ?? { kind: 'none' }
}

/** The bytes to send: `start` to `end` inclusive. */
export interface ByteRange {
  start: number
  end: number
}

/**
 * The bytes a single range asks for of content `size` bytes long, or undefined when
 * none of them exist (a 416).
 */
export function resolveRange (range: Extract<RangeRequest, { kind: 'from' | 'suffix' }>, size: number): ByteRange | undefined {
  if (range.kind === 'suffix') {
    if (range.suffix === 0 || size === 0) {
      return undefined
    }
    return { start: Math.max(0, size - range.suffix), end: size - 1 }
  }
  if (range.first >= size) {
    return undefined
  }
  return { start: range.first, end: Math.min(size - 1, range.last ?? size - 1) }
}

/** The 416 for a range none of whose bytes exist, with the length the client can ask again within. */
export function unsatisfiable (size: number): HttpError {
  return new HttpError(416, 'RANGE_INVALID', `the range asked for is outside the content, which is ${size} bytes long`, { headers: { 'content-range': `bytes */${size}` } })
}
