import { readFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { run } from '../../harness/processes.ts'

/** What a benchmark ran on, for the record beside its numbers. */
export async function machineSummary (): Promise<Record<string, string | number>> {
  const kernel = (await run('uname', ['-r'])).stdout.trim()
  let os = ''
  try {
    os = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(await readFile('/etc/os-release', 'utf8'))?.[1] ?? ''
  } catch {}
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os,
    kernel,
    node: process.version
  }
}
