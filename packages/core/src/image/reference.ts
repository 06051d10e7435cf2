import { isDigest } from '../digest.ts'
import { ShoalError } from '../errors.ts'
import { DOCKER_HUB_ALIASES } from './constants.ts'

/** A string that should have been an image reference is not one. */
export class InvalidImageReferenceError extends ShoalError {
  override name = 'InvalidImageReferenceError'
  override readonly code = 'ERR_INVALID_IMAGE_REFERENCE'
}

/** An image reference, such as `registry.example.com:5000/team/app:1.2` or `alpine` (`docker.io/library/alpine:latest`). */
export interface ImageReference {
  /** The registry host as the reference names it (`docker.io` for Docker Hub short forms). */
  registry: string
  /** The repository, such as `library/alpine`. */
  repository: string
  /** The tag; `latest` when neither a tag nor a digest is given. */
  tag?: string
  /** The manifest digest, when the reference pins one. */
  digest?: string
}

/** An OCI repository name (distribution spec). */
const REPOSITORY_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
const TAG_RE = /^[\w][\w.-]{0,127}$/
/** A registry host: a DNS name or IPv4 address, or a bracketed IPv6 one, with an optional port. */
const REGISTRY_RE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/
const MAX_REFERENCE = 1024

/**
 * Whether `name` is a registry host as an image reference names it (`host[:port]`, a
 * bracketed IPv6 address, at most 255 characters): what daemons, supernodes and dfctl
 * accept as an upstream or source host name.
 */
export function isRegistryHost (name: unknown): name is string {
  return typeof name === 'string' && name.length <= 255 && REGISTRY_RE.test(name)
}

/**
 * Parses an image reference the way docker does: the first path component is a
 * registry when it has a dot or a port, or is `localhost`; otherwise the image is on
 * Docker Hub, and a single-component name is in `library/`.
 *
 * @throws {InvalidImageReferenceError} naming what is wrong
 */
export function parseImageReference (input: string): ImageReference {
  const bad = (why: string): InvalidImageReferenceError =>
    new InvalidImageReferenceError(`invalid image reference ${JSON.stringify(input.slice(0, 256))}: ${why}`)
  if (input.length === 0 || input.length > MAX_REFERENCE) {
    throw bad(`must be 1 to ${MAX_REFERENCE} characters`)
  }
  let rest = input
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!isDigest(digest)) {
      throw bad(`${JSON.stringify(digest)} is not a digest (sha256:<64 hex digits>)`)
    }
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG_RE.test(tag)) {
      throw bad(`tag ${JSON.stringify(tag)} is not valid`)
    }
  }
  const slash = rest.indexOf('/')
  const first = slash >= 0 ? rest.slice(0, slash) : ''
  let registry = 'docker.io'
  let repository = rest
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))) {
    registry = first
    repository = rest.slice(slash + 1)
    if (!REGISTRY_RE.test(registry)) {
      throw bad(`registry ${JSON.stringify(registry)} is not a host[:port]`)
    }
  }
  if (DOCKER_HUB_ALIASES.includes(registry.toLowerCase())) {
    registry = 'docker.io'
    if (!repository.includes('/')) {
      repository = `library/${repository}`
    }
  }
  if (!REPOSITORY_RE.test(repository)) {
    throw bad(`repository ${JSON.stringify(repository)} is not valid (lower case letters, digits and separators)`)
  }
  return { registry, repository, ...(tag != null || digest == null ? { tag: tag ?? 'latest' } : {}), ...(digest != null ? { digest } : {}) }
}

/** The reference written out in full: `registry/repository[:tag][@digest]`. */
export function formatImageReference (ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag != null ? `:${ref.tag}` : ''}${ref.digest != null ? `@${ref.digest}` : ''}`
}

/** Whether a registry host names Docker Hub. */
export function isDockerHub (host: string): boolean {
  return DOCKER_HUB_ALIASES.includes(host.toLowerCase())
}
