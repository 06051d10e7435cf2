import { HttpError, InvalidDigestError, parseDigest } from '@shoal/core'
import { MAX_NAME_LENGTH, MAX_TAG_LENGTH } from './constants.ts'

/**
 * Checks of the parts of a registry request, done by the mirror itself before anything
 * is asked of the upstream: a request no registry could accept gets its 4xx here, with
 * the distribution spec's error code, never whatever the upstream makes of it.
 */

/** A repository name (distribution spec), such as `library/alpine`. */
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/

/** A tag (distribution spec). */
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]*$/

/** What an error message quotes of a client's input: enough to recognise it, never all of a huge one. */
function quote (value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value)
}

/**
 * @throws {HttpError} 400 NAME_INVALID when `name` breaks the grammar or is longer than {@link MAX_NAME_LENGTH}
 */
export function checkName (name: string): string {
  if (name.length > MAX_NAME_LENGTH) {
    throw new HttpError(400, 'NAME_INVALID', `repository name is ${name.length} characters long; at most ${MAX_NAME_LENGTH} are accepted`)
  }
  if (!NAME_RE.test(name)) {
    throw new HttpError(400, 'NAME_INVALID', `invalid repository name ${quote(name)}: lowercase letters and digits, separated by ".", "_", "__", "-" or "/"`)
  }
  return name
}

/**
 * @throws {HttpError} 400 DIGEST_INVALID unless `digest` is `sha256:<64 hex>` or `sha512:<128 hex>` (the only ones the mirror can verify)
 */
export function checkDigest (digest: string): string {
  try {
    return parseDigest(digest).value
  } catch (err) {
    if (err instanceof InvalidDigestError) {
      throw new HttpError(400, 'DIGEST_INVALID', `invalid digest ${quote(digest)}: expected sha256:<64 lowercase hex digits> or sha512:<128 lowercase hex digits>`)
    }
    throw err
  }
}

/** A manifest reference: a tag, or a digest (which makes the manifest immutable). */
export type ManifestReference = { kind: 'tag', tag: string } | { kind: 'digest', digest: string }

/**
 * A reference with a colon is a digest (a tag cannot hold one), anything else a tag.
 *
 * @throws {HttpError} 400 DIGEST_INVALID or 400 TAG_INVALID (a malformed tag)
 */
export function parseReference (reference: string): ManifestReference {
  if (reference.includes(':')) {
    return { kind: 'digest', digest: checkDigest(reference) }
  }
  if (reference.length > MAX_TAG_LENGTH || !TAG_RE.test(reference)) {
    throw new HttpError(400, 'TAG_INVALID', `invalid tag ${quote(reference)}: at most ${MAX_TAG_LENGTH} of letters, digits, "_", "." and "-", not starting with "." or "-"`)
  }
  return { kind: 'tag', tag: reference }
}
