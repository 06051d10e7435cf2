import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { HealthGateError } from '../errors.ts'
import { sh, type Executor } from '../exec/index.ts'

const ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json'
].join(', ')

/** Waits for the daemon's /healthz to answer 200, polling from the host itself. */
export async function waitHealthy (exec: Executor, daemonUrl: string, options: { timeout: number, signal?: AbortSignal }): Promise<void> {
  const deadline = Date.now() + options.timeout
  let last = ''
  while (Date.now() < deadline) {
    const res = await exec.run(`curl -fsS -m 2 ${sh(`${daemonUrl}/healthz`)}`, { timeout: 10_000, ...(options.signal != null ? { signal: options.signal } : {}) })
    if (res.code === 0) {
      return
    }
    last = res.stderr.trim()
    await sleep(500, undefined, options.signal != null ? { signal: options.signal } : {})
  }
  throw new HealthGateError(`the daemon's /healthz at ${daemonUrl} did not answer within ${options.timeout} ms${last !== '' ? `: ${last}` : ''}`)
}

export interface PullSummary {
  image: string
  blobs: number
  bytes: number
}

/** The `Authorization` header line for the pull, once a registry asked for a token; fed to curl on stdin (`-H @file`), never on its command line. */
type Auth = string | undefined

async function fetchManifest (exec: Executor, url: string, auth: Auth, signal?: AbortSignal): Promise<{ body: Buffer, challenge?: string }> {
  // base64: the exact bytes, to check the digest; the headers go to stderr for the status and any challenge,
  // through a file: stderr may be a socket (the local executor), which /dev/stderr cannot be opened on
  const res = await exec.run(`d=$(mktemp) || exit 1; trap 'rm -f "$d"' EXIT; curl -sS -m 30 -H ${sh(`Accept: ${ACCEPT}`)} -H @- -D "$d" -o /dev/stdout ${sh(url)} | base64 -w0; cat "$d" >&2`, { input: auth ?? '', timeout: 40_000, ...(signal != null ? { signal } : {}) })
  const statuses = [...res.stderr.matchAll(/^HTTP\/[\d.]+ (\d{3})/gm)].map(m => Number(m[1]))
  const status = statuses[statuses.length - 1]
  const body = Buffer.from(res.stdout.trim(), 'base64')
  if (status === 401) {
    const challenge = /^www-authenticate:\s*(Bearer .+?)\r?$/im.exec(res.stderr)?.[1]
    if (challenge != null) {
      return { body, challenge }
    }
  }
  if (status !== 200 || body.length === 0) {
    const why = status != null ? `HTTP ${status}${body.length > 0 ? `: ${body.toString('utf8').slice(0, 200).trim()}` : ''}` : res.stderr.split('\n').find(l => l.startsWith('curl:')) ?? `exit ${res.code}`
    throw new HealthGateError(`fetching ${url} through the mirror failed: ${why}`)
  }
  return { body }
}

/**
 * What a registry client does on a Bearer challenge the mirror passes on (Docker Hub
 * asks even for public images): an anonymous token from the realm, asked from the host.
 */
async function anonymousToken (exec: Executor, challenge: string, signal?: AbortSignal): Promise<string> {
  const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map(m => [m[1], m[2]]))
  if (params.realm == null || !/^https?:\/\//.test(params.realm)) {
    throw new HealthGateError(`the registry's challenge names no http(s) realm: ${challenge}`)
  }
  const args = [params.service != null ? `--data-urlencode ${sh(`service=${params.service}`)}` : '', params.scope != null ? `--data-urlencode ${sh(`scope=${params.scope}`)}` : ''].join(' ')
  const res = await exec.run(`curl -fsS -m 30 -G ${args} ${sh(params.realm)}`, { timeout: 40_000, ...(signal != null ? { signal } : {}) })
  let token: unknown
  try {
    const body = JSON.parse(res.stdout) as { token?: unknown, access_token?: unknown }
    token = body.token ?? body.access_token
  } catch {}
  if (res.code !== 0 || typeof token !== 'string' || !/^[\w.~+/=-]+$/.test(token)) {
    throw new HealthGateError(`no anonymous token from ${params.realm}: ${res.stderr.trim() || 'no token in the answer'}; gate.image must be readable without credentials`)
  }
  return `Authorization: Bearer ${token}\n`
}

/** The manifest, with an anonymous token when the registry asks for one. */
async function manifestWithAuth (exec: Executor, url: string, auth: Auth, signal?: AbortSignal): Promise<{ body: Buffer, auth: Auth }> {
  let res = await fetchManifest(exec, url, auth, signal)
  if (res.challenge != null && auth == null) {
    auth = await anonymousToken(exec, res.challenge, signal)
    res = await fetchManifest(exec, url, auth, signal)
  }
  if (res.challenge != null) {
    throw new HealthGateError(`fetching ${url} through the mirror failed: HTTP 401 even with an anonymous token; gate.image must be readable without credentials`)
  }
  return { body: res.body, auth }
}

/** A descriptor digest the gate accepts: anything else in an (unverified, by-tag) manifest is refused before it reaches a command line. */
const DIGEST_RE = /^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$/

function checkDigest (digest: unknown, image: string): string {
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) {
    throw new HealthGateError(`the manifest of ${image} that came through the mirror names a malformed digest ${JSON.stringify(digest)?.slice(0, 200) ?? String(digest)}`)
  }
  return digest
}

const digestOf = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`

type Manifest = { mediaType?: string, manifests?: Array<{ digest: string, platform?: { os?: string, architecture?: string } }>, config?: { digest: string, size: number }, layers?: Array<{ digest: string, size: number }> }

function parseManifest (body: Buffer, image: string): Manifest {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'))
    if (parsed != null && typeof parsed === 'object') {
      return parsed as Manifest
    }
  } catch {}
  throw new HealthGateError(`the manifest of ${image} that came through the mirror is not JSON (${body.length} bytes)`)
}

/**
 * A real pull of `image` (name:tag or name@digest on the daemon's default registry)
 * through the mirror, from the host: the manifest (an index resolved to linux/amd64),
 * then every blob, each hashed on the host and compared with its digest. Blobs go to
 * a temporary file on the host, never into memory here.
 */
export async function testPull (exec: Executor, mirror: string, image: string, options: { timeout: number, signal?: AbortSignal }): Promise<PullSummary> {
  const at = image.includes('@') ? image.indexOf('@') : image.lastIndexOf(':')
  const name = image.slice(0, at)
  const ref = image.slice(at + 1)
  const signal = AbortSignal.any([AbortSignal.timeout(options.timeout), ...(options.signal != null ? [options.signal] : [])])
  let { body, auth } = await manifestWithAuth(exec, `${mirror}/v2/${name}/manifests/${ref}`, undefined, signal)
  if (ref.startsWith('sha256:') && digestOf(body) !== ref) {
    throw new HealthGateError(`the manifest of ${image} hashes to ${digestOf(body)}`)
  }
  let manifest = parseManifest(body, image)
  if (manifest.manifests != null) {
    const pick = manifest.manifests.find(m => m.platform?.os === 'linux' && m.platform.architecture === 'amd64') ?? manifest.manifests[0]
    if (pick == null) {
      throw new HealthGateError(`the index of ${image} lists no manifest`)
    }
    checkDigest(pick.digest, image)
    ;({ body, auth } = await manifestWithAuth(exec, `${mirror}/v2/${name}/manifests/${pick.digest}`, auth, signal))
    if (digestOf(body) !== pick.digest) {
      throw new HealthGateError(`the manifest ${pick.digest} of ${image} hashes to ${digestOf(body)}`)
    }
    manifest = parseManifest(body, image)
  }
  const blobs = [...(manifest.config != null ? [manifest.config] : []), ...(manifest.layers ?? [])]
  if (blobs.length === 0) {
    throw new HealthGateError(`the manifest of ${image} lists no blobs`)
  }
  for (const b of blobs) {
    checkDigest(b.digest, image)
  }
  // one command for every blob: each fetched to a temporary file and hashed there; the
  // token (if any) arrives on stdin into a file of the user's only
  const script = [
    't=$(mktemp) && h=$(mktemp) || exit 1',
    'trap \'rm -f "$t" "$h"\' EXIT',
    'cat > "$h"',
    ...blobs.map(b => `curl -fsS -m ${Math.ceil(options.timeout / 1000)} -H @"$h" -L -o "$t" ${sh(`${mirror}/v2/${name}/blobs/${b.digest}`)} || { echo FAIL ${sh(b.digest)}; exit 1; }; echo ${sh(b.digest)} "sha256:$(sha256sum "$t" | cut -d' ' -f1) $(stat -c %s "$t")"`)
  ].join('\n')
  const res = await exec.run(script, { input: auth ?? '', timeout: options.timeout + 5_000, signal })
  if (res.code !== 0) {
    throw new HealthGateError(`pulling ${image} through the mirror failed: ${res.stdout.split('\n').find(l => l.startsWith('FAIL')) ?? ''} ${res.stderr.trim()}`.trim())
  }
  let bytes = 0
  for (const line of res.stdout.trim().split('\n')) {
    const [want, got, size] = line.split(' ')
    if (want !== got) {
      throw new HealthGateError(`blob ${want} of ${image} came through the mirror as ${got}`)
    }
    bytes += Number(size)
  }
  return { image, blobs: blobs.length, bytes }
}
