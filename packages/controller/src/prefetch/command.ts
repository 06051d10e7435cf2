import { readFile } from 'node:fs/promises'
import { Option, type Command } from 'commander'
import { InvalidConfigError, runMain } from '@shoal/core'
import { DEFAULT_CONCURRENCY, DEFAULT_POLL_INTERVAL, DEFAULT_TIMEOUT } from './constants.ts'
import { prefetch } from './prefetch.ts'
import { barReporter, lineReporter, renderJson, renderTable, type Reporter } from './report.ts'
import { selectHosts, type PrefetchHost } from './select-hosts.ts'
import { selection, selects, withSelection, type SelectionFlags } from '../inventory/cli.ts'
import { loadInventory, selectHosts as selectInventoryHosts } from '../inventory/index.ts'
import { executorFor } from '../exec/index.ts'
import { localDaemonUrl } from '../rollout/desired.ts'

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** `90s`, `10m`, `1h`, `500ms`, or a number of seconds → ms. */
export function parseDuration (value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim())
  const ms = m == null ? NaN : Number(m[1]) * ({ ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's'] ?? NaN)
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new InvalidConfigError(`${flag} must be a duration such as 90s, 10m or 1h, not "${value}"`)
  }
  return Math.round(ms)
}

/** `name=http://host:port` → a host. */
export function parseDaemon (value: string): PrefetchHost {
  const i = value.indexOf('=')
  const name = i > 0 ? value.slice(0, i).trim() : ''
  const url = i > 0 ? value.slice(i + 1).trim() : ''
  let parsed: URL | undefined
  try {
    parsed = new URL(url)
  } catch {}
  if (name === '' || parsed == null || !['http:', 'https:'].includes(parsed.protocol)) {
    throw new InvalidConfigError(`--daemon must be name=http://host:port, not "${value}"`)
  }
  return { name, url: parsed.origin }
}

function wholeNumber (value: string, flag: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new InvalidConfigError(`${flag} must be a whole number of at least 1, not "${value}"`)
  }
  return n
}

function percent (value: string): number {
  const n = Number(value.trim().replace(/%$/, ''))
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 100) {
    throw new InvalidConfigError(`--percent must be a number above 0 and at most 100, not "${value}"`)
  }
  return n
}

interface Flags extends SelectionFlags {
  daemon?: string[]
  supernodeApi?: string[]
  tokenFile?: string
  platform?: string[]
  concurrency: string
  percent?: string
  count?: string
  timeout: string
  pollInterval: string
  json?: boolean
  progress: 'auto' | 'bars' | 'lines' | 'none'
}

/** Adds `dfctl prefetch` to the program. */
export function addPrefetchCommand (program: Command): void {
  withSelection(program.command('prefetch'), { required: false })
    .description('Fill the caches before a release: ask the supernodes to preheat the images, then the hosts\' daemons to prefetch them, and report each host.\nThe hosts and supernodes come from the inventory (selected as dfctl rollout selects them), or, without one, from --daemon and --supernode-api.\nExits 1 when a host (or a preheat) failed, naming it and why; 2 on bad flags.')
    .argument('<image...>', 'image references: registry/name:tag, registry/name@sha256:..., or Docker Hub short forms (alpine)')
    .addOption(new Option('--daemon <name=url>', 'without an inventory: a host\'s daemon, such as web-1=http://10.0.0.5:65001 (repeat for each host) (default: none)').argParser(collect))
    .addOption(new Option('--supernode-api <url>', 'without an inventory: a supernode\'s HTTP address to preheat first, such as http://sn-a:8002 (repeatable; needs --token-file) (default: none: no preheat)').argParser(collect))
    .addOption(new Option('--token-file <file>', 'without an inventory: file holding the supernodes\' preheat token (their --preheat-token-file) (default: none)'))
    .addOption(new Option('--platform <os/arch>', 'platform to prefetch (repeatable) (default: the daemon\'s, linux/amd64)').argParser(collect))
    .option('--concurrency <n>', 'hosts asked at once', String(DEFAULT_CONCURRENCY))
    .addOption(new Option('--percent <p>', 'only this percent of the hosts (rounded up), spread across idc and location (default: all hosts)'))
    .addOption(new Option('--count <n>', 'only this many hosts, spread across idc and location (default: all hosts)'))
    .option('--timeout <duration>', 'give up on what has not finished after this long (90s, 10m, 1h)', `${DEFAULT_TIMEOUT / 60_000}m`)
    .option('--poll-interval <duration>', 'pause between two status requests to a daemon', `${DEFAULT_POLL_INTERVAL}ms`)
    .option('--json', 'print the result as JSON on stdout instead of the table', false)
    .addOption(new Option('--progress <mode>', 'live progress on stderr: bars on a terminal, otherwise one line per host per state change').choices(['auto', 'bars', 'lines', 'none']).default('auto'))
    .showHelpAfterError()
    .action(async (images: string[], flags: Flags) => {
      await runMain('dfctl prefetch', async (signal) => await runPrefetch(images, flags, signal))
    })
}

async function runPrefetch (images: string[], flags: Flags, signal: AbortSignal): Promise<number> {
  for (const image of images) {
    if (image.trim() === '' || /\s/.test(image)) {
      throw new InvalidConfigError(`"${image}" is not an image reference`)
    }
  }
  const { hosts, supernodes, token } = flags.inventory != null ? await fromInventory(flags.inventory, flags) : await fromFlags(flags)
  const selected = selectHosts(hosts, {
    ...(flags.percent != null ? { percent: percent(flags.percent) } : {}),
    ...(flags.count != null ? { count: wholeNumber(flags.count, '--count') } : {})
  })

  const mode = flags.progress === 'auto' ? (process.stderr.isTTY ? 'bars' : 'lines') : flags.progress
  const reporter: Reporter = mode === 'bars' ? barReporter(process.stderr) : mode === 'lines' ? lineReporter(process.stderr) : { update () {}, stop () {} }
  let result
  try {
    result = await prefetch({ onUpdate: reporter.update }, {
      images,
      hosts: selected,
      supernodes,
      ...(token != null ? { token } : {}),
      ...(flags.platform != null ? { platforms: flags.platform } : {}),
      concurrency: wholeNumber(flags.concurrency, '--concurrency'),
      timeout: parseDuration(flags.timeout, '--timeout'),
      pollInterval: parseDuration(flags.pollInterval, '--poll-interval')
    }, { signal })
  } finally {
    reporter.stop()
    // the SSH connections the requests went over (ControlMaster)
    await Promise.all(hosts.map(async h => { await h.exec?.close() }))
  }

  process.stdout.write(flags.json === true ? renderJson(result) : renderTable(result))
  for (const failed of [...result.preheat, ...result.hosts].filter(s => s.state !== 'succeeded')) {
    process.stderr.write(`dfctl prefetch: ${failed.kind === 'supernode' ? `preheat on ${failed.name}` : failed.name} failed: ${failed.error ?? failed.state}\n`)
  }
  return result.ok ? 0 : 1
}

interface Targets {
  hosts: PrefetchHost[]
  /** supernode API base URLs to preheat on */
  supernodes: string[]
  token?: string
}

/** The selected hosts' daemons (their daemonApi, idc and location) and the inventory's supernode APIs. */
async function fromInventory (file: string, flags: Flags): Promise<Targets> {
  const given = [['--daemon', flags.daemon], ['--supernode-api', flags.supernodeApi], ['--token-file', flags.tokenFile]].filter(([, v]) => v != null).map(([f]) => f)
  if (given.length > 0) {
    throw new InvalidConfigError(`${given.join(' and ')} cannot be given with --inventory: the inventory names the hosts (reached over SSH, or at hosts[].daemonApi) and the supernodes to preheat on (supernodes[].api, preheatTokenFile)`)
  }
  const inventory = await loadInventory(file)
  const hosts = selectInventoryHosts(inventory, selection(flags)).map(h => ({
    name: h.name,
    // without a daemonApi, from the host itself (over SSH, as status and doctor ask):
    // the daemon's API stays on its loopback listener
    ...(h.daemonApi != null ? { url: h.daemonApi } : { url: localDaemonUrl(h), exec: executorFor(h) }),
    ...(h.idc != null ? { idc: h.idc } : {}),
    ...(h.location != null ? { location: h.location } : {})
  }))
  const token = inventory.preheatTokenFile != null ? await readToken(inventory.preheatTokenFile, 'preheatTokenFile') : undefined
  return { hosts, supernodes: inventory.supernodeApis, ...(token != null ? { token } : {}) }
}

/** --daemon and --supernode-api with --token-file. */
async function fromFlags (flags: Flags): Promise<Targets> {
  if (selects(flags)) {
    throw new InvalidConfigError('--hosts, --group and --selector select hosts of an inventory: give --inventory too')
  }
  const hosts = (flags.daemon ?? []).map(parseDaemon)
  if (hosts.length === 0) {
    throw new InvalidConfigError('no hosts: give --inventory, or at least one --daemon name=http://host:port')
  }
  const names = hosts.map(h => h.name)
  const twice = names.filter((n, i) => names.indexOf(n) !== i)
  if (twice.length > 0) {
    throw new InvalidConfigError(`--daemon names must be unique: ${[...new Set(twice)].join(', ')} given twice`)
  }
  const supernodes = (flags.supernodeApi ?? []).map(url => parseDaemon(`supernode=${url}`).url)
  if ((supernodes.length > 0) !== (flags.tokenFile != null)) {
    throw new InvalidConfigError('--supernode-api and --token-file go together')
  }
  const token = flags.tokenFile != null ? await readToken(flags.tokenFile, '--token-file') : undefined
  return { hosts, supernodes, ...(token != null ? { token } : {}) }
}

async function readToken (file: string, what: string): Promise<string> {
  let token
  try {
    token = (await readFile(file, 'utf8')).trim()
  } catch (err) {
    throw new InvalidConfigError(`cannot read ${what} ${file}: ${(err as Error).message}`)
  }
  if (token === '') {
    throw new InvalidConfigError(`${what} ${file} is empty`)
  }
  return token
}
