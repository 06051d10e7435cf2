import { run } from '../../harness/processes.ts'

export interface FetchResult {
  status: number
  bytes: number
  /** Wall-clock seconds, from starting the client to its digest */
  seconds: number
  /** sha256:<hex> of the body as the client received it */
  digest: string
}

/**
 * GETs a URL the way a container runtime takes a layer: the body streamed through a
 * sha256 (OpenSSL, with the CPU's SHA extensions, as fast as Go's hash in dockerd and
 * containerd) and checked, nothing written to disk. curl and openssl run outside every
 * measured process, so the client's CPU is nobody's; it is the same client in every
 * mode of a benchmark.
 */
export async function fetchAndHash (url: string, options: { timeoutMs?: number, netns?: string } = {}): Promise<FetchResult> {
  const timeoutMs = options.timeoutMs ?? 600_000
  const script = `curl -sS --fail --max-time ${Math.ceil(timeoutMs / 1000)} -w '%{stderr}\\n%{http_code} %{size_download}' "$0" | openssl dgst -sha256 -r`
  const command = options.netns == null ? 'bash' : 'ip'
  const args = ['-o', 'pipefail', '-c', script, url]
  const started = performance.now()
  const res = await run(command, options.netns == null ? args : ['netns', 'exec', options.netns, 'bash', ...args], { timeoutMs: timeoutMs + 5_000 })
  const seconds = (performance.now() - started) / 1000
  const [status, bytes] = (res.stderr.trim().split('\n').at(-1) ?? '').split(' ').map(Number)
  const hex = /^([a-f0-9]{64}) /.exec(res.stdout)?.[1]
  if (res.code !== 0 || status == null || bytes == null || hex == null) {
    throw new Error(`fetching ${url} failed (${res.code}): ${res.stderr.trim()}`)
  }
  return { status, bytes, seconds, digest: `sha256:${hex}` }
}
