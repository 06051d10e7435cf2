/**
 * V8 settings for a process that moves hundreds of MB/s through short-lived buffers:
 * the daemon and supernode binaries import this module before anything else.
 *
 * `--external-memory-accounted-in-global-limit`: by default V8 starts a full garbage
 * collection every time some 64 MB of ArrayBuffer memory has been allocated, however
 * small the JavaScript heap. Every byte a Shoal process moves passes through two or
 * three such buffers (socket reads, decryption, file writes), so a daemon moving 1 GiB
 * ran about 90 full collections of its ~28 MB heap, and on a shaped link more still.
 * With the flag, buffer memory counts toward the heap's ordinary growth limit instead.
 * Measured with `./dev bench fleet` (4 hosts, 10 MB/s links): 45 -> 28 CPU-seconds per
 * GiB delivered; the price is a higher peak RSS (about +60 MB per process), see
 * docs/benchmarks.md.
 *
 * `SHOAL_V8_FLAGS` replaces the flags (empty: set none). They are set at start-up with
 * `v8.setFlagsFromString`, before the process has allocated much: these flags are read
 * whenever V8 decides to collect, so setting them early works like passing them to node.
 */
import { setFlagsFromString } from 'node:v8'

export const DEFAULT_V8_FLAGS = '--external-memory-accounted-in-global-limit'

const flags = process.env.SHOAL_V8_FLAGS ?? DEFAULT_V8_FLAGS
if (flags.trim() !== '') {
  setFlagsFromString(flags)
}
