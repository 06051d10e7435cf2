/**
 * Defaults of the scheduler module. Every one is an `Init` field of the class that uses
 * it; docs/scheduling.md gives the reason for each rule.
 */

/** Peer sources listed per piece, before the supernode. */
export const DEFAULT_MAX_PEER_SOURCES = 3

/** How far past a peer's first missing piece rarest-first looks, in multiples of the pieces asked for (at least 16). */
export const DEFAULT_WINDOW_FACTOR = 4

/** Transfers of one piece the supernode serves at once while no peer holds it. */
export const DEFAULT_SUPERNODE_FANOUT = 1

/** Transfers of one piece into one IDC from a peer in another IDC at once: a piece crosses once, then spreads inside. */
export const DEFAULT_CROSS_IDC_FANOUT = 1

/**
 * Longest one long-poll pass sleeps before it looks again although nothing woke it:
 * what no report announces (a BUSY back-off or a block running out, an assignment
 * expiring) is noticed within this (ms).
 */
export const DEFAULT_RECHECK_INTERVAL = 1_000

/** Transfers the supernode serves at once as first source (its upload slots). */
export const DEFAULT_MAX_SEEDING = 32

/**
 * Transfers one peer is sent at once as first source, over all tasks. Below a daemon's
 * own upload slots (`--max-uploads`, 16) so a popular parent is not driven into BUSY
 * answers, and well below the supernode's {@link DEFAULT_MAX_SEEDING}.
 */
export const DEFAULT_MAX_PEER_UPLOADS = 8

/** How long a handed-out piece counts against its first source's load (ms). */
export const DEFAULT_ASSIGNMENT_TTL = 30_000

/**
 * Holders of one piece looked at per decision. Parent choice visits at most this many
 * usable holders (and 4× as many in all), so a piece held by 10,000 peers costs no more
 * than one held by 64.
 */
export const DEFAULT_MAX_HOLDER_SCAN = 64

/** Weight of the newest sample in a peer's moving average of piece time. */
export const DEFAULT_SPEED_EWMA_WEIGHT = 0.3

/** A peer that sent bad bytes (digest or length mismatch) is not offered for that task for this long (ms). */
export const DEFAULT_BAD_PIECE_TASK_BLOCK = 10 * 60_000

/** Bad bytes again within this long (ms) escalate the block to every task. */
export const DEFAULT_BAD_PIECE_MEMORY = 60 * 60_000

/** The first escalated block (ms); each further offence doubles it, up to 24 h. */
export const DEFAULT_BAD_PIECE_GLOBAL_BLOCK = 30 * 60_000

/** Longest escalated block (ms). */
export const MAX_BAD_PIECE_BLOCK = 24 * 60 * 60_000

/** Passes of one long poll: each either answers or waits for a wake-up until the deadline. */
export const MAX_POLL_PASSES = 10_000

/**
 * Most pieces one task may have. Content whose declared length at the configured piece
 * size means more is refused: 64 GiB at the default piece sizes is under 5,000 pieces,
 * and each piece costs memory per holder.
 */
export const DEFAULT_MAX_PIECES_PER_TASK = 65_536

/** A failed task is forgotten this long after it failed (ms): it is only a negative cache. */
export const DEFAULT_FAILED_TASK_TTL = 10 * 60_000

/** Who holds what of a task nobody asked about for this long (ms) is forgotten; daemons' announces bring it back. */
export const DEFAULT_IDLE_HOLDERS_TTL = 30 * 60_000

/** Tasks whose holder maps are kept at most; the least recently used beyond this lose theirs. */
export const DEFAULT_MAX_TASKS_WITH_HOLDERS = 2_048

/** Failed tasks kept at most (oldest forgotten first). */
export const DEFAULT_MAX_FAILED_TASKS = 1_024

/** Peers PeerStats keeps piece times and offences of, at most: past this, new ids are not recorded. */
export const DEFAULT_MAX_STATS_PEERS = 65_536

/** One speed sample moves a parent's and the overall average by at most this factor of the overall one, either way. */
export const SPEED_SAMPLE_CLAMP = 10

/** Distinct reporters whose bad-bytes reports about one peer it takes to block it for every task. */
export const BAD_PIECE_GLOBAL_REPORTERS = 2

/**
 * Longest a requester waits for a busy parent in its own IDC for one piece (ms) before
 * it is sent to a farther parent or the supernode instead.
 */
export const DEFAULT_NEAR_WAIT = 3_000

/** (requester, task, piece) triples whose wait for a busy parent is timed, at most. */
export const DEFAULT_MAX_NEAR_WAITS = 65_536

/** Consecutive failed piece transfers after which a peer is not offered as a source. */
export const DEFAULT_PEER_FAILURE_LIMIT = 5

/** How long a failing peer is left out (ms). */
export const DEFAULT_PEER_COOLDOWN = 30_000

/** How long a peer that answered BUSY is not offered as a source (ms): long enough for some of its uploads to finish. */
export const DEFAULT_PEER_BUSY_BACKOFF = 1_000

/** Peers not heard from for this long are forgotten (ms); daemons announce every minute. */
export const DEFAULT_PEER_TTL = 300_000

/** A failed task is answered from memory for this long before its source is tried again (ms). */
export const DEFAULT_FAILED_TASK_RETRY_AFTER = 5_000

/** How long a registration waits for the source to answer (ms). */
export const DEFAULT_SOURCE_HEADERS_TIMEOUT = 30_000

/** Pieces one freed slot's wake-up looks at, at most (its candidate list is made once per wake). */
export const MAX_WAKE_CANDIDATES = 256

/** Waiter-piece checks one freed slot's wake-up makes, at most. */
export const MAX_WAKE_CHECKS = 16_384
