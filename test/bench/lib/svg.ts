/**
 * Small hand-written SVG charts for docs/benchmarks.md: no plotting dependency, and the
 * output diffs well in git.
 */

export interface Series {
  label: string
  color: string
  /** For a CDF: the sample; for a line chart: y values, one per x */
  values: number[]
}

export interface Marker {
  x: number
  label: string
}

const W = 780
const H = 400
const M = { left: 64, right: 220, top: 36, bottom: 52 }
const PW = W - M.left - M.right
const PH = H - M.top - M.bottom

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/** A round step that gives about `n` ticks over [0, max]. */
function tickStep (max: number, n: number): number {
  const raw = max / n
  const mag = 10 ** Math.floor(Math.log10(raw))
  return [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw) ?? raw
}

function frame (title: string, xLabel: string, yLabel: string, xMax: number, yMax: number, yFormat: (v: number) => string): string[] {
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`)
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`)
  out.push(`<text x="${M.left}" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`)
  const xs = tickStep(xMax, 8)
  for (let v = 0; v <= xMax + 1e-9; v += xs) {
    const x = M.left + v / xMax * PW
    out.push(`<line x1="${x.toFixed(1)}" y1="${M.top}" x2="${x.toFixed(1)}" y2="${M.top + PH}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${x.toFixed(1)}" y="${M.top + PH + 16}" text-anchor="middle">${Number(v.toFixed(6))}</text>`)
  }
  const ys = tickStep(yMax, 5)
  for (let v = 0; v <= yMax + 1e-9; v += ys) {
    const y = M.top + PH - v / yMax * PH
    out.push(`<line x1="${M.left}" y1="${y.toFixed(1)}" x2="${M.left + PW}" y2="${y.toFixed(1)}" stroke="#e5e5e5"/>`)
    out.push(`<text x="${M.left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${esc(yFormat(v))}</text>`)
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${PW}" height="${PH}" fill="none" stroke="#888"/>`)
  out.push(`<text x="${M.left + PW / 2}" y="${H - 12}" text-anchor="middle">${esc(xLabel)}</text>`)
  out.push(`<text transform="translate(16 ${M.top + PH / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`)
  return out
}

function legend (series: Series[]): string[] {
  return series.flatMap((s, i) => {
    const y = M.top + 12 + i * 20
    return [
      `<line x1="${M.left + PW + 14}" y1="${y}" x2="${M.left + PW + 38}" y2="${y}" stroke="${s.color}" stroke-width="2.5"/>`,
      `<text x="${M.left + PW + 44}" y="${y + 4}">${esc(s.label)}</text>`
    ]
  })
}

/**
 * Empirical CDF of completion times: for each series, the share of hosts done by time x.
 * Markers draw dashed vertical lines (the ideal, a target).
 */
export function cdfChart (title: string, xLabel: string, series: Series[], markers: Marker[] = []): string {
  const xMax = Math.max(...series.flatMap(s => s.values), ...markers.map(m => m.x)) * 1.05
  const out = frame(title, xLabel, 'hosts finished', xMax, 1, v => `${Math.round(v * 100)}%`)
  const px = (x: number): number => M.left + x / xMax * PW
  const py = (y: number): number => M.top + PH - y * PH
  markers.forEach((m, i) => {
    out.push(`<line x1="${px(m.x).toFixed(1)}" y1="${M.top}" x2="${px(m.x).toFixed(1)}" y2="${M.top + PH}" stroke="#555" stroke-dasharray="4 4"/>`)
    // staggered, so labels of markers close together do not overlap
    out.push(`<text x="${(px(m.x) + 4).toFixed(1)}" y="${M.top + 14 + i * 15}" fill="#555">${esc(m.label)}</text>`)
  })
  for (const s of series) {
    const sorted = [...s.values].sort((a, b) => a - b)
    const points: string[] = [`${px(0).toFixed(1)},${py(0).toFixed(1)}`]
    sorted.forEach((v, i) => {
      points.push(`${px(v).toFixed(1)},${py(i / sorted.length).toFixed(1)}`)
      points.push(`${px(v).toFixed(1)},${py((i + 1) / sorted.length).toFixed(1)}`)
    })
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2.5" points="${points.join(' ')}"/>`)
  }
  out.push(...legend(series), '</svg>')
  return `${out.join('\n')}\n`
}

/** Lines over shared x values (such as p99 ÷ ideal against the number of hosts). */
export function lineChart (title: string, xLabel: string, yLabel: string, xs: number[], series: Series[], yMarkers: Marker[] = []): string {
  const xMax = Math.max(...xs) * 1.05
  const yMax = Math.max(...series.flatMap(s => s.values), ...yMarkers.map(m => m.x)) * 1.1
  const out = frame(title, xLabel, yLabel, xMax, yMax, v => String(Number(v.toFixed(2))))
  const px = (x: number): number => M.left + x / xMax * PW
  const py = (y: number): number => M.top + PH - y / yMax * PH
  for (const m of yMarkers) {
    out.push(`<line x1="${M.left}" y1="${py(m.x).toFixed(1)}" x2="${M.left + PW}" y2="${py(m.x).toFixed(1)}" stroke="#555" stroke-dasharray="4 4"/>`)
    out.push(`<text x="${M.left + 4}" y="${(py(m.x) - 4).toFixed(1)}" fill="#555">${esc(m.label)}</text>`)
  }
  for (const s of series) {
    const points = s.values.map((v, i) => `${px(xs[i]!).toFixed(1)},${py(v).toFixed(1)}`)
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2.5" points="${points.join(' ')}"/>`)
    s.values.forEach((v, i) => { out.push(`<circle cx="${px(xs[i]!).toFixed(1)}" cy="${py(v).toFixed(1)}" r="3.5" fill="${s.color}"/>`) })
  }
  out.push(...legend(series), '</svg>')
  return `${out.join('\n')}\n`
}
