/** Defaults of `dfctl prefetch` (see {@link PrefetchInit}). */

/** Daemons asked at once. */
export const DEFAULT_CONCURRENCY = 8

/** Longest the whole prefetch (preheat and every host) may take: 30 min. */
export const DEFAULT_TIMEOUT = 30 * 60_000

/** Pause between two status requests for one job: 1 s. */
export const DEFAULT_POLL_INTERVAL = 1_000

/** Longest one HTTP request to a daemon or a supernode may take: 10 s. */
export const DEFAULT_REQUEST_TIMEOUT = 10_000

/** Platforms prefetched when none are given (contract 4's default, said out loud). */
export const DEFAULT_PLATFORMS = ['linux/amd64']

/**
 * Status requests to one job that may fail in a row (the daemon restarting, a network
 * blip) before its host is reported failed.
 */
export const MAX_POLL_ERRORS = 3

/** Largest response body read from a daemon or supernode API: 4 MiB. */
export const MAX_RESPONSE_BYTES = 4 * 1024 * 1024
