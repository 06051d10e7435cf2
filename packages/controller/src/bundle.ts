import { copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawnBounded } from './exec/executor.ts'
import { BundleError } from './errors.ts'

export interface BundleOptions {
  /** The tarball to write: `shoal-<version>-linux-x64.tar.gz`. @default that name in the working directory */
  output?: string
  /** The Node.js binary shipped. @default the one running dfctl */
  node?: string
  /** The workspace to bundle from. @default the one this dfctl was built in */
  workspace?: string
  signal?: AbortSignal
}

/** The launcher: the bundled node runs the bundled daemon, whatever node the host has (or has not). */
const WRAPPER = `#!/bin/sh
here=$(dirname "$(readlink -f "$0")")
exec "$here/node" "$here/../app/dist/bin/dfget.js" "$@"
`

/** The workspace this dfctl was built in (packages/controller/dist/ is three levels down). */
function defaultWorkspace (): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
}

/**
 * Builds a release bundle: `pnpm deploy --prod` of @shoal/dfget (the daemon, its
 * production dependencies, the workspace packages it uses copied in), the Node.js
 * binary and `bin/dfget`, as one tarball whose single top directory is
 * `shoal-<version>/`. Needs a built workspace (`pnpm -r build`) and pnpm on PATH.
 *
 * @throws {BundleError}
 */
export async function buildBundle (options: BundleOptions = {}): Promise<{ path: string, version: string, bytes: number }> {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new BundleError(`bundles are linux-x64; this is ${process.platform}-${process.arch}`)
  }
  const workspace = options.workspace ?? defaultWorkspace()
  const pkgFile = join(workspace, 'packages/dfget/package.json')
  let version: string
  try {
    version = (JSON.parse(await readFile(pkgFile, 'utf8')) as { version: string }).version
    await stat(join(workspace, 'packages/dfget/dist/bin/dfget.js'))
  } catch (err) {
    throw new BundleError(`dfctl bundle runs from a built Shoal workspace (pnpm -r build); ${(err as Error).message}`)
  }
  const output = resolve(options.output ?? `shoal-${version}-linux-x64.tar.gz`)
  if (basename(output) !== `shoal-${version}-linux-x64.tar.gz`) {
    throw new BundleError(`-o must name the file shoal-${version}-linux-x64.tar.gz (the rollout reads the version from the name), not ${basename(output)}`)
  }
  const staging = await mkdtemp(join(tmpdir(), 'dfctl-bundle-'))
  const top = join(staging, `shoal-${version}`)
  const so = options.signal != null ? { signal: options.signal } : {}
  try {
    await mkdir(join(top, 'bin'), { recursive: true })
    const deploy = await spawnBounded('pnpm', ['--dir', workspace, '--filter', '@shoal/dfget', 'deploy', '--legacy', '--prod', '--prefer-offline', join(top, 'app')], 'pnpm deploy', { timeout: 600_000, ...so })
    if (deploy.code !== 0) {
      throw new BundleError(`pnpm deploy of @shoal/dfget failed (${deploy.code}): ${deploy.stderr.trim() || deploy.stdout.trim()}`)
    }
    await copyFile(options.node ?? process.execPath, join(top, 'bin/node'))
    await writeFile(join(top, 'bin/dfget'), WRAPPER, { mode: 0o755 })
    await writeFile(join(top, 'VERSION'), `${version}\n`)
    const tmp = `${output}.tmp`
    await mkdir(dirname(output), { recursive: true })
    const tar = await spawnBounded('tar', ['-C', staging, '--owner=0', '--group=0', '-I', 'gzip -1', '-cf', tmp, `shoal-${version}`], 'tar', { timeout: 600_000, ...so })
    if (tar.code !== 0) {
      await rm(tmp, { force: true })
      throw new BundleError(`tar failed (${tar.code}): ${tar.stderr.trim()}`)
    }
    await rename(tmp, output)
    return { path: output, version, bytes: (await stat(output)).size }
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
}
