import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { BundleError } from '../errors.ts'

/** A release bundle on this machine. */
export interface Bundle {
  path: string
  version: string
  /** Directory name on hosts: `<version>-<first 12 hex of its sha256>`, so a rebuilt bundle is a new release. */
  release: string
}

const NAME = /^shoal-([0-9A-Za-z.+-]+)-linux-x64\.tar\.gz$/

/** @throws {BundleError} when the file is missing or not named as `dfctl bundle` names it */
export async function openBundle (path: string): Promise<Bundle> {
  const match = NAME.exec(basename(path))
  if (match?.[1] == null) {
    throw new BundleError(`${path}: not a bundle made by dfctl bundle (shoal-<version>-linux-x64.tar.gz)`)
  }
  try {
    if (!(await stat(path)).isFile()) {
      throw new Error('not a file')
    }
  } catch (err) {
    throw new BundleError(`bundle ${path}: ${(err as Error).message}`)
  }
  const hash = createHash('sha256')
  await pipeline(createReadStream(path), hash)
  return { path, version: match[1], release: `${match[1]}-${hash.digest('hex').slice(0, 12)}` }
}
