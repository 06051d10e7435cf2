import { randomBytes } from 'node:crypto'
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { InvalidConfigError } from '../errors.ts'

/**
 * The cluster key: a libp2p private-network pre-shared key, in the file format
 * go-libp2p and js-libp2p (`@libp2p/pnet`) use for one (a "swarm key"):
 *
 * ```
 * /key/swarm/psk/1.0.0/
 * /base16/
 * <64 hex digits>
 * ```
 *
 * Every supernode and daemon of a cluster holds the same key; a node without it cannot
 * complete a connection (every byte on the wire, the Noise handshake included, is
 * encrypted with it; see `cluster-protector.ts`), so it can neither fetch pieces nor
 * speak the control protocol.
 */
const HEADER = '/key/swarm/psk/1.0.0/'
const ENCODING = '/base16/'
const KEY_RE = /^[0-9a-f]{64}$/i

/** A new cluster key, as the text of a key file. */
export function generateClusterKey (): string {
  return `${HEADER}\n${ENCODING}\n${randomBytes(32).toString('hex')}\n`
}

/**
 * Writes a new cluster key file, readable by its owner only. Never replaces an
 * existing file: overwriting a cluster's key by accident cuts hosts off.
 *
 * @throws {InvalidConfigError} when the file exists
 */
export async function writeClusterKeyFile (path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  // written whole to a temporary name, then linked into place: link fails if the
  // target exists, so an existing key is never replaced, and no reader sees half a key
  const tmp = `${path}.${process.pid}.tmp`
  // 'wx': a file planted at the temporary name (a shared directory) is refused, not written through
  await writeFile(tmp, generateClusterKey(), { mode: 0o600, flush: true, flag: 'wx' })
  try {
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new InvalidConfigError(`${path} already exists; a cluster key is never overwritten (remove it first to replace it)`)
    }
    throw err
  } finally {
    await rm(tmp, { force: true })
  }
}

/**
 * Parses the text of a cluster key file into the 32-byte key.
 *
 * @throws {InvalidConfigError} naming what is wrong
 */
export function parseClusterKey (text: string, source = 'cluster key'): Uint8Array {
  const lines = text.split(/\r?\n/).map(l => l.trim()).filter(l => l.length > 0)
  if (lines.length !== 3 || lines[0] !== HEADER || lines[1] !== ENCODING || !KEY_RE.test(lines[2] ?? '')) {
    throw new InvalidConfigError(`${source} is not a cluster key: expected the lines ${HEADER}, ${ENCODING} and 64 hex digits (make one with: dfctl cluster-key generate FILE)`)
  }
  return Uint8Array.from(Buffer.from(lines[2]!, 'hex'))
}

/**
 * Reads a cluster key file.
 *
 * @throws {InvalidConfigError} when it is missing, unreadable or malformed
 */
export async function readClusterKeyFile (path: string): Promise<Uint8Array> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new InvalidConfigError(code === 'ENOENT'
      ? `--cluster-key ${path}: no such file; create one with "dfctl cluster-key generate ${path}" and copy it to every host of the cluster`
      : `--cluster-key ${path}: cannot read it (${(err as Error).message})`)
  }
  return parseClusterKey(text, `--cluster-key ${path}`)
}
