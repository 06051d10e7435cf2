/** Defaults of the supernode that are not flags. */

/** How long a preheat layer's progress waits for a change before it looks again. */
export const PROGRESS_POLL_MS = 1_000
