const UNITS: Record<string, number> = {
  '': 1,
  K: 1000,
  M: 1000 ** 2,
  G: 1000 ** 3,
  T: 1000 ** 4,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4
}

/**
 * Parses a byte count or rate: a plain number of bytes (`1048576`), or a number with a
 * unit: decimal `K`, `M`, `G`, `T` (powers of 1000) or binary `Ki`, `Mi`, `Gi`, `Ti`
 * (powers of 1024), optionally followed by `B` and `/s`: `100MB`, `1.5GiB/s`, `512Ki`.
 * A lowercase `b` (bits?) and unknown units are refused rather than guessed.
 *
 * @returns whole bytes (rounded down), or null when `value` is not in this form
 */
export function parseByteRate (value: string): number | null {
  const match = /^(\d+(?:\.\d+)?)\s*(?:([KMGT]i?)B?|B)?(?:\/s)?$/.exec(value.trim().replace(/^([\d.]+\s*)k/, '$1K'))
  if (match == null) {
    return null
  }
  const bytes = Math.floor(Number(match[1]) * (UNITS[match[2] ?? ''] ?? Number.NaN))
  return Number.isSafeInteger(bytes) ? bytes : null
}
