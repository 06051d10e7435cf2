import { createHash, type Hash } from 'node:crypto'
import { DigestMismatchError, InvalidDigestError } from './errors.ts'

/** Digest algorithms the OCI distribution spec registers, by the hex length of their value. */
const ALGORITHMS = { sha256: 64, sha512: 128 } as const

export type DigestAlgorithm = keyof typeof ALGORITHMS

export interface ParsedDigest {
  algorithm: DigestAlgorithm
  hex: string
  /** The canonical `algorithm:hex` form */
  value: string
}

const DIGEST_RE = /^(sha256|sha512):([a-f0-9]+)$/

/**
 * Parses an OCI content digest. Only the registered algorithms are accepted, so a
 * digest that parses can always be verified.
 *
 * @throws {InvalidDigestError} when the string is not `sha256:<64 hex>` or `sha512:<128 hex>`
 */
export function parseDigest (digest: string): ParsedDigest {
  const match = DIGEST_RE.exec(digest)
  const algorithm = match?.[1] as DigestAlgorithm | undefined
  const hex = match?.[2]

  if (algorithm == null || hex == null || hex.length !== ALGORITHMS[algorithm]) {
    throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 200))}: expected sha256:<64 hex digits> or sha512:<128 hex digits>`)
  }

  return { algorithm, hex, value: digest }
}

export function isDigest (digest: string): boolean {
  try {
    parseDigest(digest)
    return true
  } catch {
    return false
  }
}

export function sha256Hex (data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

/**
 * Hashes content as it streams past and checks it against an expected digest at the end.
 */
export class DigestVerifier {
  readonly expected: ParsedDigest
  private readonly hash: Hash
  private bytes = 0

  constructor (expected: string) {
    this.expected = parseDigest(expected)
    this.hash = createHash(this.expected.algorithm)
  }

  update (chunk: Uint8Array): void {
    this.hash.update(chunk)
    this.bytes += chunk.byteLength
  }

  get bytesHashed (): number {
    return this.bytes
  }

  /**
   * Finishes the hash. Call once.
   *
   * @throws {DigestMismatchError} when the content hashed to something else
   */
  verify (): void {
    const actual = `${this.expected.algorithm}:${this.hash.digest('hex')}`

    if (actual !== this.expected.value) {
      throw new DigestMismatchError(this.expected.value, actual)
    }
  }
}
