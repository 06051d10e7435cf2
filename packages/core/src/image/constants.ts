/** Where `docker.io` references are fetched from. */
export const DOCKER_HUB_REGISTRY = 'registry-1.docker.io'
/** Names image references give Docker Hub; all mean {@link DOCKER_HUB_REGISTRY}. */
export const DOCKER_HUB_ALIASES: readonly string[] = ['docker.io', 'index.docker.io', 'registry-1.docker.io']
/** Platform picked from an index when none is asked for. */
export const DEFAULT_PLATFORMS: readonly string[] = ['linux/amd64']
/** Largest manifest or index read (the distribution spec recommends accepting 4 MiB). @default 4 MiB */
export const DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
/** Largest token-server answer read. */
export const MAX_TOKEN_RESPONSE_BYTES = 64 * 1024
/** Longest one registry request (manifest, token) may take, body included. @default 30000 ms */
export const DEFAULT_REGISTRY_TIMEOUT = 30_000
/** Manifests fetched from one index: more platforms than anyone ships. */
export const MAX_INDEX_MANIFESTS = 256

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json'
} as const

/** What a manifest GET accepts, in order of preference. */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerList, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest].join(', ')
/** Prefetch or preheat jobs kept per process, running and finished. */
export const DEFAULT_MAX_JOBS = 100
/** How long a finished job is kept. @default 1 h */
export const DEFAULT_JOB_MAX_AGE = 3_600_000
/** Layers of one job fetched at once (as many as a docker pull). */
export const DEFAULT_JOB_CONCURRENCY = 3
/** Longest one job may run. @default 1 h */
export const DEFAULT_JOB_TIMEOUT = 3_600_000

/** How long a registry token is used before a new one is asked for: well under the 5 minutes Docker Hub's last. */
export const TOKEN_REUSE_MS = 60_000
