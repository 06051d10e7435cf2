/** Defaults of the registry mirror's OCI Distribution API (see oci-request.ts, manifest-cache.ts). */

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

/** Longest one upstream manifest fetch may take. */
export const MANIFEST_FETCH_TIMEOUT = 30_000

/** Manifest types asked for when a client sent no Accept header: every type a pull can meet. */
export const MANIFEST_MEDIA_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json'
]
