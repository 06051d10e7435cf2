/** Defaults of the daemon that are not flags (the mirror's and the proxy's are in their own constants.ts). */

/** Ended downloads kept for progress reports. */
export const RECENT_DOWNLOADS = 64

/** How long a URL whose content did not match the digest asked is answered so without fetching it again. */
export const MISMATCH_MEMORY_MS = 60_000

/** How often the download counters are read for the status's bytes by source over the last hour. */
export const RECENT_BYTES_INTERVAL_MS = 60_000

/** The window `/api/v1/status` reports bytes by source over. */
export const RECENT_BYTES_WINDOW_MS = 3_600_000
