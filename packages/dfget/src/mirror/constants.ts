/**
 * Defaults of the registry mirror's upstreams and their authentication, in one place so
 * the flags' help, the Init docs and the code cannot disagree.
 */

/**
 * The names Docker Hub goes by: image references say `docker.io`, containerd sends
 * `?ns=docker.io`, the API lives at `registry-1.docker.io`, old clients say
 * `index.docker.io`. They are one upstream.
 */
export const DOCKER_HUB_NAMES: ReadonlySet<string> = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])

/** The key Docker Hub's upstream is found under, whichever of its names it was given as. */
export const DOCKER_HUB_KEY = 'docker.io'

/** Longest one token request (or challenge probe) to an upstream may take. */
export const DEFAULT_AUTH_TIMEOUT = 10_000

/** Tokens kept (one per upstream and repository); the least recently used go first. */
export const DEFAULT_MAX_TOKENS = 1_000

/**
 * A token is dropped this long before the registry's `expires_in` runs out, so one that
 * is handed out does not expire on its way to the registry (or the supernode).
 */
export const DEFAULT_TOKEN_EXPIRY_MARGIN = 10_000

/** Lifetime of a token whose answer names none: the distribution token spec's default. */
export const DEFAULT_TOKEN_LIFETIME = 60_000

/** How long a learnt challenge (Basic or Bearer realm) is reused before `/v2/` is asked again. */
export const DEFAULT_CHALLENGE_TTL = 600_000

/** Largest token response read. */
export const MAX_TOKEN_RESPONSE = 64 * 1024

// the OCI Distribution API's limits (oci-request.ts, manifest-cache.ts)

/**
 * Longest repository name accepted. The distribution spec leaves the limit to
 * registries; the Distribution registry and most clients stop at 255 characters for
 * `host[:port]/name`, so a longer name is one no registry could accept.
 */
export const MAX_NAME_LENGTH = 255

/** Longest tag (distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`). */
export const MAX_TAG_LENGTH = 128

/** Largest manifest fetched, cached and served by digest (the Distribution registry refuses larger on push). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

/** Bytes of manifests kept in the by-digest cache, least recently used dropped first. */
export const MANIFEST_CACHE_BYTES = 64 * 1024 * 1024

/** Longest one manifest load (through the swarm) may take. */
export const MANIFEST_FETCH_TIMEOUT = 30_000

/** Manifest types a manifest by digest is asked for with: every type a pull can meet. */
export const MANIFEST_MEDIA_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json'
]

/** How long the blob authorizer reuses an allowed answer; 0 asks every time. */
export const DEFAULT_AUTHZ_CACHE_TTL = 60_000

/** Allowed answers the blob authorizer keeps (and blob lengths it remembers from them). */
export const DEFAULT_AUTHZ_CACHE_ENTRIES = 10_000

/** Longest one authorization check (a HEAD to the upstream) may take. */
export const DEFAULT_AUTHZ_TIMEOUT = 10_000

/** Largest upstream error body passed back to a refused client. */
export const DEFAULT_AUTHZ_MAX_ERROR_BODY = 65_536
