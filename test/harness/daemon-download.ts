import { createHash } from 'node:crypto'
import { request } from 'undici'
import type { DaemonHandle } from './swarm.ts'

/**
 * Asks a daemon for content over its API (as `dfget <url>` does), reads the whole body
 * and resolves with its sha256 digest; rejects when the answer is not a 200 or the
 * connection is cut.
 */
export async function downloadThroughDaemon (daemon: Pick<DaemonHandle, 'url'>, url: string, digest: string, options: { timeoutMs?: number } = {}): Promise<string> {
  const res = await request(`${daemon.url}/api/v1/downloads`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url, digest }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 120_000)
  })
  const hash = createHash('sha256')
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer)
  }
  if (res.statusCode !== 200) {
    throw new Error(`daemon answered ${res.statusCode}`)
  }
  return `sha256:${hash.digest('hex')}`
}
