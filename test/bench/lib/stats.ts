/** Nearest-rank percentile (p in 0..100) of a non-empty sample. */
export function percentile (values: readonly number[], p: number): number {
  if (values.length === 0) {
    throw new RangeError('percentile of no values')
  }
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil(p / 100 * sorted.length))
  return sorted[rank - 1]!
}

export interface Distribution {
  p50: number
  p95: number
  p99: number
  max: number
}

export function distribution (values: readonly number[]): Distribution {
  return { p50: percentile(values, 50), p95: percentile(values, 95), p99: percentile(values, 99), max: Math.max(...values) }
}

/** Renders rows as an aligned text table; the first row is the header. */
export function textTable (rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map(r => (r[c] ?? '').length)))
  return rows.map(row => row.map((cell, c) => c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)).join('  ')).join('\n')
}

/** Renders rows as a Markdown table; the first row is the header. */
export function markdownTable (rows: string[][]): string {
  const [head, ...body] = rows
  return [`| ${head!.join(' | ')} |`, `| ${head!.map((_, i) => i === 0 ? '---' : '---:').join(' | ')} |`, ...body.map(r => `| ${r.join(' | ')} |`)].join('\n')
}
