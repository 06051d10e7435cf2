/** Defaults of the HTTP(S) proxy (`--proxy-listen`) and its local CA. */

/** Longest a tunnel or a forwarded request may take to connect to its target. */
export const DEFAULT_CONNECT_TIMEOUT = 10_000
/** A tunnel or proxy connection with no traffic either way for this long is closed. */
export const DEFAULT_IDLE_TIMEOUT = 300_000
/** Connections the proxy holds open at once (tunnels included); more are closed at once. */
export const DEFAULT_MAX_CONNECTIONS = 512
/** Until a proxied request's head is in. */
export const DEFAULT_HEADERS_TIMEOUT = 30_000
/** An idle keep-alive connection from a proxy client is closed after this long. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT = 5_000
/** Largest request head a proxy client may send. */
export const MAX_HEADER_SIZE = 16_384
/** How long a minted leaf certificate is valid: short, since it is minted again on demand. */
export const LEAF_VALIDITY_MS = 3 * 24 * 3600_000
/** A cached leaf is minted again once this much of its validity has passed. */
export const LEAF_RENEW_AFTER_MS = 24 * 3600_000
/** Leaf certificates kept in memory; the least recently minted go first. */
export const MAX_CACHED_LEAVES = 1024
/** How long the local CA is valid. */
export const CA_VALIDITY_MS = 10 * 365 * 24 * 3600_000
/** File names under `<dataDir>/proxy/`. */
export const CA_CERT_FILE = 'ca.crt'
export const CA_KEY_FILE = 'ca.key'
