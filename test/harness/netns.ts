import { readdir } from 'node:fs/promises'
import { run } from './processes.ts'
import { deleteNamespace } from '../bench/lib/netns.ts'
import type { ExecWrapper } from './swarm.ts'

export interface TestNamespace {
  /** The namespace's name */
  ns: string
  /** The root namespace's end of the link */
  hostAddress: string
  /** The namespace's address: not loopback, so clients that skip proxies for loopback use one */
  address: string
  /** Runs a command inside the namespace */
  exec: ExecWrapper
  /** Kills what runs in it and deletes it (with its link); safe to call twice. */
  remove(): Promise<void>
}

async function sh (command: string, args: string[]): Promise<void> {
  const res = await run(command, args, { timeoutMs: 30_000 })
  if (res.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${res.code}): ${res.stderr.trim()}`)
  }
}

/** Deletes namespaces (and links) of ours left by a test process that was killed outright. */
async function removeStale (prefix: string): Promise<void> {
  const names = await readdir('/run/netns').catch(() => [])
  for (const ns of names) {
    const pid = new RegExp(`^${prefix}(\\d+)-reg$`).exec(ns)?.[1]
    if (pid == null) {
      continue
    }
    try {
      process.kill(Number(pid), 0)
      continue
    } catch {}
    await run('ip', ['netns', 'del', ns])
    await run('ip', ['link', 'del', `${prefix}${pid}h`])
  }
}

/**
 * One network namespace linked to the root namespace by a veth pair, on `<subnet>.1`
 * (root side) and `<subnet>.2` (inside), such as 198.18.86 → 198.18.86.1/.2. `prefix`
 * starts the namespace and link names (short: link names have at most 15 characters, and a pid up to 7 digits is added).
 */
export async function createNamespace (prefix: string, subnet: string): Promise<TestNamespace> {
  await removeStale(prefix)
  const tag = `${prefix}${process.pid}`
  const ns = `${tag}-reg`
  const hostLink = `${tag}h`
  const nsLink = `${tag}n`
  const hostAddress = `${subnet}.1`
  const address = `${subnet}.2`
  let removed = false
  const remove = async (): Promise<void> => {
    if (removed) {
      return
    }
    removed = true
    // deleting the namespace deletes its veth end, and with it the root one
    await deleteNamespace(ns)
    await run('ip', ['link', 'del', hostLink])
  }
  try {
    await sh('ip', ['netns', 'add', ns])
    await sh('ip', ['link', 'add', hostLink, 'type', 'veth', 'peer', 'name', nsLink, 'netns', ns])
    await sh('ip', ['addr', 'add', `${hostAddress}/24`, 'dev', hostLink])
    await sh('ip', ['link', 'set', hostLink, 'up'])
    await sh('ip', ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', nsLink])
    await sh('ip', ['-n', ns, 'link', 'set', nsLink, 'up'])
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  } catch (err) {
    await remove()
    throw err
  }
  return { ns, hostAddress, address, exec: (command, args) => ({ command: 'ip', args: ['netns', 'exec', ns, command, ...args] }), remove }
}
