import { dirname } from 'node:path'
import { MAX_MANAGED_FILE } from '../constants.ts'
import { HostCommandError } from '../errors.ts'
import { sh, type Executor, type RunOptions } from '../exec/index.ts'

/** A file as it is (or is not) on a host. */
export interface FileState {
  path: string
  exists: boolean
  content?: Buffer
  /** Permission bits, such as 0o600. */
  mode?: number
}

async function check (exec: Executor, script: string, what: string, options: { input?: RunOptions['input'], signal?: AbortSignal } = {}): Promise<string> {
  const res = await exec.run(script, options)
  if (res.code !== 0) {
    throw new HostCommandError(`${exec.host}: ${what} failed (exit ${res.code}): ${res.stderr.trim() || res.stdout.trim()}`)
  }
  return res.stdout
}

/** Reads files of the host (config files: at most 1 MiB each), in one command. */
export async function readFiles (exec: Executor, paths: string[], options: { signal?: AbortSignal } = {}): Promise<Map<string, FileState>> {
  // a symbolic link is refused (L): `stat` would report the link's 0777 and our rename would replace it
  const script = paths.map(p => `if [ -L ${sh(p)} ]; then echo "L"; readlink ${sh(p)} | head -c 4096 | tr '\\n' ' '; echo; elif [ -f ${sh(p)} ]; then s=$(stat -L -c '%a %s' ${sh(p)}) || exit 1; echo "F $s"; [ "\${s#* }" -le ${MAX_MANAGED_FILE} ] && base64 -w0 < ${sh(p)}; echo; elif [ -e ${sh(p)} ]; then echo "X"; echo; else echo "M"; echo; fi`).join('\n')
  const out = paths.length === 0 ? '' : await check(exec, script, 'reading files', options)
  const lines = out.split('\n')
  const states = new Map<string, FileState>()
  paths.forEach((path, i) => {
    const head = lines[i * 2] ?? ''
    const body = lines[i * 2 + 1] ?? ''
    if (head === 'M') {
      states.set(path, { path, exists: false })
    } else if (head.startsWith('F ')) {
      const [mode, size] = head.slice(2).split(' ')
      if (Number(size) > MAX_MANAGED_FILE) {
        throw new HostCommandError(`${exec.host}: ${path} is larger than ${MAX_MANAGED_FILE} bytes; not a config file this rollout manages`)
      }
      states.set(path, { path, exists: true, content: Buffer.from(body, 'base64'), mode: parseInt(mode ?? '644', 8) })
    } else if (head === 'L') {
      throw new HostCommandError(`${exec.host}: ${path} is a symbolic link (to ${body.trim()}); dfctl does not write through links: replace it with the file itself, or point the inventory at the target`)
    } else {
      throw new HostCommandError(`${exec.host}: ${path} exists and is not a regular file`)
    }
  })
  return states
}

/** Writes a file atomically (temporary file, then rename), creating its directory. */
export async function writeFile (exec: Executor, path: string, content: Buffer | string, mode: number, options: { signal?: AbortSignal } = {}): Promise<void> {
  const tmp = `${path}.dfctl-tmp`
  await check(exec, `umask 077 && mkdir -p ${sh(dirname(path))} && cat > ${sh(tmp)} && chmod ${mode.toString(8)} ${sh(tmp)} && mv -f ${sh(tmp)} ${sh(path)}`, `writing ${path}`, { input: content, ...options })
}

/** Puts a file back as it was: its content and mode, or no file. */
export async function restoreFile (exec: Executor, state: FileState, options: { signal?: AbortSignal } = {}): Promise<void> {
  // readFiles refused links, so `before` is a regular file or none; the rename replaces whatever is there now, never writes through a link
  if (state.exists && state.content != null) {
    await writeFile(exec, state.path, state.content, state.mode ?? 0o644, options)
  } else {
    await check(exec, `rm -f ${sh(state.path)}`, `removing ${state.path}`, options)
  }
}

export { check as runChecked }
