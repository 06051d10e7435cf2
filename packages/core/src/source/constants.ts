/**
 * Defaults of {@link SourceClient}, in one place so the flags' help, the Init docs and
 * the code cannot disagree.
 */

/** Largest source accepted: generous for any image layer, small enough to stop a runaway stream. 64 GiB */
export const DEFAULT_MAX_SOURCE_BYTES = 64 * 1024 ** 3

/** Source responses open at once; more callers wait for a slot. */
export const DEFAULT_MAX_CONCURRENT_FETCHES = 32

/** Redirects followed per fetch (registries redirect blobs to object storage, once). */
export const DEFAULT_MAX_REDIRECTS = 5

/** Longest wait for one hop's response headers once connected (undici `headersTimeout`). */
export const DEFAULT_HEADERS_TIMEOUT = 30_000

/** Longest silence between two body chunks (undici `bodyTimeout`). */
export const DEFAULT_BODY_TIMEOUT = 30_000

/** TCP + TLS connect. */
export const DEFAULT_CONNECT_TIMEOUT = 10_000

/**
 * Longest a fetch may take to produce its final response headers: DNS checks, every
 * redirect hop and the headers, not the body (which the idle body timeout bounds).
 */
export const DEFAULT_RESPONSE_TIMEOUT = 60_000

/** Longest a fetch waits for a free slot when `maxConcurrentFetches` are open. */
export const DEFAULT_SLOT_TIMEOUT = 300_000

/** How long `stop()` lets open source responses finish before cutting them. */
export const DEFAULT_STOP_TIMEOUT = 5_000

/** Connections kept per origin by the client's own agent. */
export const DEFAULT_CONNECTIONS = 32

/** Error and redirect bodies are read up to this much (to reuse the connection), then cut. */
export const DUMP_LIMIT = 64 * 1024

/**
 * Request headers never forwarded to a source, whoever set them: they describe one
 * connection (or a proxy), not the request, and forwarding them enables smuggling.
 */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = new Set([
  'host', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'trailer', 'content-length', 'expect'
])

/**
 * The only request headers forwarded across a redirect to another origin: a caller may
 * carry credentials in any header (`Private-Token`, `X-Api-Key`, ...), and they go only
 * to the origin it named.
 */
export const CROSS_ORIGIN_HEADERS: ReadonlySet<string> = new Set(['accept', 'accept-encoding', 'accept-language', 'user-agent', 'range', 'if-match', 'if-range'])
