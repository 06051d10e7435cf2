import { request } from 'undici'

export type Samples = Map<string, number>

/** Scrapes a Prometheus text endpoint into `name{labels}` → value. */
export async function scrape (url: string): Promise<Samples> {
  const res = await request(url, { signal: AbortSignal.timeout(10_000) })
  const text = await res.body.text()
  if (res.statusCode !== 200) {
    throw new Error(`${url} answered ${res.statusCode}`)
  }
  return parseSamples(text)
}

/** Parses Prometheus text format into `name{labels}` → value. */
export function parseSamples (text: string): Samples {
  const samples: Samples = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) {
      continue
    }
    const i = line.lastIndexOf(' ')
    samples.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return samples
}

/** One sample's value, 0 when absent. */
export function sample (samples: Samples, name: string, labels: Record<string, string> = {}): number {
  const entries = Object.entries(labels)
  const key = entries.length === 0 ? name : `${name}{${entries.map(([k, v]) => `${k}="${v}"`).join(',')}}`
  return samples.get(key) ?? 0
}

export interface BytesBySource {
  origin: number
  supernode: number
  peer: number
}

/** A daemon's `shoal_dfget_download_bytes_total` by source. */
export async function daemonBytes (daemonUrl: string): Promise<BytesBySource> {
  const s = await scrape(`${daemonUrl}/metrics`)
  const bytes = (source: string): number => sample(s, 'shoal_dfget_download_bytes_total', { source })
  return { origin: bytes('origin'), supernode: bytes('supernode'), peer: bytes('peer') }
}
