import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { isNode, LineCounter, parseDocument, type Document } from 'yaml'
import { InventoryError } from '../errors.ts'
import { inventorySchema, isUpstreamName, type InventoryInput } from './schema.ts'
import type { z } from 'zod'

export type Runtime = 'dockerd' | 'containerd'

/** One host of the fleet, as the rollout, status, doctor and prefetch see it. */
export interface Host {
  name: string
  address: string
  executor: 'ssh' | 'local'
  /** `key` and `knownHostsFile` are absolute paths once loaded. */
  ssh: { user: string, port: number, key?: string, knownHostsFile?: string }
  idc?: string
  location?: string
  labels: Record<string, string>
  runtimes: Runtime[]
  /** Prefix of every path written on the host ('' when none). */
  root: string
  /** The inventory's daemon settings with this host's own on top. */
  daemon: Record<string, unknown>
  /**
   * http URL of its daemon API as the controller reaches it, when the inventory gives one;
   * otherwise the controller asks the daemon from the host itself, over SSH.
   */
  daemonApi?: string
  /** Groups the host is in. */
  groups: string[]
}

export interface Inventory {
  /** The inventory file, absolute. */
  file: string
  clusterKeyFile: string
  /** The supernodes' addresses, as the daemons' `supernode` takes them. */
  supernodes: string[]
  /** The HTTP APIs of the supernodes that give one (`supernodes[].api`): where prefetch preheats. */
  supernodeApis: string[]
  /** The supernodes' preheat token file, absolute; set whenever `supernodeApis` is not empty. */
  preheatTokenFile?: string
  bundle?: string
  daemon: Record<string, unknown>
  gate: InventoryInput['gate']
  groups: Record<string, string[]>
  hosts: Host[]
}

type Path = ReadonlyArray<PropertyKey>

/** Line and column of the deepest node of `path` the document has (the field itself, or where it is missing from). */
function position (doc: Document, counter: LineCounter, path: Path): { line: number, col: number } | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true)
    if (isNode(node) && node.range != null) {
      return counter.linePos(node.range[0])
    }
  }
  return undefined
}

function field (path: Path): string {
  return path.reduce<string>((s, p) => typeof p === 'number' ? `${s}[${p}]` : s === '' ? String(p) : `${s}.${String(p)}`, '')
}

function describe (file: string, doc: Document, counter: LineCounter, issue: z.core.$ZodIssue): string {
  // an unknown key's issue sits on its parent: point at the key itself
  const path: PropertyKey[] = issue.code === 'unrecognized_keys' && issue.keys[0] != null ? [...issue.path, issue.keys[0]] : [...issue.path]
  const pos = position(doc, counter, path)
  const where = pos != null ? `${file}:${pos.line}:${pos.col}` : file
  return `${where}: ${field(path) || '(top level)'}: ${issue.message}`
}

/** A path of the inventory: ~/ is the user's home, a relative path is relative to the inventory file. */
const abs = (base: string, p: string): string => p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : isAbsolute(p) ? p : resolve(base, p)

/**
 * Reads and validates an inventory file. Every problem is reported at once, each as
 * `file:line:col: field: message`.
 *
 * @throws {InventoryError}
 */
export async function loadInventory (path: string): Promise<Inventory> {
  const file = resolve(path)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new InventoryError(`cannot read inventory ${file}: ${(err as Error).message}`)
  }
  const counter = new LineCounter()
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new InventoryError(`inventory ${file} is not valid YAML:\n${doc.errors.map(e => `  ${file}:${e.linePos?.[0].line ?? '?'}:${e.linePos?.[0].col ?? '?'}: ${e.message.split('\n')[0]}`).join('\n')}`)
  }
  const parsed = inventorySchema.safeParse(doc.toJS())
  const problems = parsed.success ? [] : parsed.error.issues.map(issue => describe(file, doc, counter, issue))
  if (parsed.success) {
    // upstream names become paths on the hosts (certs.d/<name>/hosts.toml): host[:port] only
    const upstreams = (daemon: Record<string, unknown>, at: PropertyKey[]): void => {
      if (daemon.upstreams != null && !Array.isArray(daemon.upstreams)) {
        problems.push(describe(file, doc, counter, { code: 'custom', path: [...at, 'upstreams'], message: 'must be a list of { name, url }', input: daemon.upstreams }))
        return
      }
      ((daemon.upstreams ?? []) as Array<{ name?: unknown } | null>).forEach((u, i) => {
        if (!isUpstreamName(u?.name)) {
          problems.push(describe(file, doc, counter, { code: 'custom', path: [...at, 'upstreams', i, 'name'], message: 'must be the registry host as image references name it: registry.example.com, registry.example.com:5000, docker.io', input: u?.name }))
        }
      })
    }
    upstreams(parsed.data.daemon, ['daemon'])
    parsed.data.hosts.forEach((h, i) => { upstreams(h.daemon, ['hosts', i, 'daemon']) })
    const names = new Set<string>()
    parsed.data.hosts.forEach((h, i) => {
      if (names.has(h.name)) {
        problems.push(describe(file, doc, counter, { code: 'custom', path: ['hosts', i, 'name'], message: `host ${h.name} is listed twice`, input: h.name }))
      }
      names.add(h.name)
      if (h.executor === 'ssh' && h.ssh.key == null) {
        problems.push(describe(file, doc, counter, { code: 'custom', path: ['hosts', i, 'ssh'], message: 'ssh.key is required for the ssh executor', input: h.ssh }))
      }
    })
    const apis = parsed.data.supernodes.map((s, i) => [s, i] as const).filter(([s]) => typeof s !== 'string' && s.api != null)
    if (apis.length > 0 && parsed.data.preheatTokenFile == null) {
      const i = apis[0]?.[1] ?? 0
      problems.push(describe(file, doc, counter, { code: 'custom', path: ['supernodes', i, 'api'], message: 'preheat needs preheatTokenFile: the file holding the supernodes\' --preheat-token-file token', input: undefined }))
    }
    if (apis.length === 0 && parsed.data.preheatTokenFile != null) {
      problems.push(describe(file, doc, counter, { code: 'custom', path: ['preheatTokenFile'], message: 'no supernode has an api to preheat on: give supernodes as { address, api }', input: parsed.data.preheatTokenFile }))
    }
    for (const [group, members] of Object.entries(parsed.data.groups)) {
      members.forEach((m, i) => {
        if (!names.has(m)) {
          problems.push(describe(file, doc, counter, { code: 'custom', path: ['groups', group, i], message: `no host named ${m}`, input: m }))
        }
      })
    }
  }
  if (!parsed.success || problems.length > 0) {
    throw new InventoryError(`invalid inventory:\n${problems.map(p => `  ${p}`).join('\n')}`)
  }
  const data = parsed.data
  const base = dirname(file)
  return {
    file,
    clusterKeyFile: abs(base, data.clusterKeyFile),
    supernodes: data.supernodes.map(s => typeof s === 'string' ? s : s.address),
    supernodeApis: data.supernodes.flatMap(s => typeof s === 'string' || s.api == null ? [] : [new URL(s.api).origin]),
    ...(data.preheatTokenFile != null ? { preheatTokenFile: abs(base, data.preheatTokenFile) } : {}),
    ...(data.bundle != null ? { bundle: abs(base, data.bundle) } : {}),
    daemon: data.daemon,
    gate: data.gate,
    groups: data.groups,
    hosts: data.hosts.map(h => {
      const daemon = { ...data.daemon, ...h.daemon }
      return {
        name: h.name,
        address: h.address,
        executor: h.executor,
        ssh: {
          user: h.ssh.user,
          port: h.ssh.port,
          ...(h.ssh.key != null ? { key: abs(base, h.ssh.key) } : {}),
          ...(h.ssh.knownHostsFile != null ? { knownHostsFile: abs(base, h.ssh.knownHostsFile) } : {})
        },
        ...(h.idc != null ? { idc: h.idc } : {}),
        ...(h.location != null ? { location: h.location } : {}),
        labels: h.labels,
        runtimes: [...new Set(h.runtimes)],
        root: h.root ?? '',
        daemon,
        ...(h.daemonApi != null ? { daemonApi: h.daemonApi } : {}),
        groups: Object.entries(data.groups).filter(([, members]) => members.includes(h.name)).map(([g]) => g)
      }
    })
  }
}
