import { stringify } from 'yaml'
import { DEFAULT_DAEMON_LISTEN, DEFAULT_REGISTRY, PATHS } from '../constants.ts'
import { HostCommandError } from '../errors.ts'
import type { Host, Inventory } from '../inventory/load.ts'
import { isUpstreamName } from '../inventory/schema.ts'

/** The daemon's mirror/API base URL as seen from the host itself. */
export function localDaemonUrl (host: Pick<Host, 'daemon'>): string {
  const listen = typeof host.daemon.listen === 'string' ? host.daemon.listen : DEFAULT_DAEMON_LISTEN
  const i = listen.lastIndexOf(':')
  let name = listen.slice(0, i)
  // a wildcard listener is reached on loopback
  if (name === '0.0.0.0' || name === '' || name === '[::]' || name === '::') {
    name = '127.0.0.1'
  }
  return `http://${name}:${listen.slice(i + 1)}`
}

/** Host paths, under the host's root prefix. */
export function hostPath (host: Pick<Host, 'root'>, path: string): string {
  return `${host.root}${path}`
}

const DOCKER_HUB = new Set(['docker.io', 'registry-1.docker.io', 'index.docker.io'])

/** How image references name a registry: its URL's host, with Docker Hub's aliases as docker.io. */
export function registryName (url: string): string {
  const host = new URL(url).host
  return DOCKER_HUB.has(host) ? 'docker.io' : host
}

/** The registries the daemon mirrors: its default `registry`, and every `upstreams` entry (contract 1). */
export function mirroredRegistries (host: Pick<Host, 'daemon'>): Array<{ name: string, server: string }> {
  const registry = typeof host.daemon.registry === 'string' ? host.daemon.registry : DEFAULT_REGISTRY
  const list = [{ name: registryName(registry), server: registry }]
  const upstreams = Array.isArray(host.daemon.upstreams) ? host.daemon.upstreams as Array<{ name?: unknown, url?: unknown }> : []
  for (const u of upstreams) {
    if (typeof u.name === 'string' && !isUpstreamName(u.name)) {
      // loadInventory refuses these; a name with / or .. must never become a path on the host
      throw new HostCommandError(`upstream name ${JSON.stringify(u.name)} is not a registry host (host[:port])`)
    }
    if (typeof u.name === 'string' && typeof u.url === 'string' && !list.some(r => r.name === u.name)) {
      list.push({ name: u.name, server: u.url })
    }
  }
  return list
}

/** The daemon's YAML config: the inventory's settings as given, with what the rollout itself places. */
export function daemonConfig (inventory: Pick<Inventory, 'supernodes' | 'file'>, host: Host): string {
  const config: Record<string, unknown> = {
    ...host.daemon,
    clusterKey: hostPath(host, PATHS.clusterKey),
    dataDir: host.daemon.dataDir ?? hostPath(host, PATHS.dataDir),
    hostname: host.daemon.hostname ?? host.name,
    ...(host.daemon.supernode == null && inventory.supernodes.length > 0 ? { supernode: inventory.supernodes } : {}),
    ...(host.idc != null ? { idc: host.idc } : {}),
    ...(host.location != null ? { location: host.location } : {})
  }
  const sorted = Object.fromEntries(Object.entries(config).sort(([a], [b]) => a.localeCompare(b)))
  return `# written by dfctl rollout; change the inventory, not this file\n${stringify(sorted)}`
}

/**
 * dockerd's daemon.json with the mirror first in `registry-mirrors`, every other key
 * kept; unchanged text when the mirror is already there.
 *
 * @throws {HostCommandError} when the file is not a JSON object (it is then left alone)
 */
export function dockerDaemonJson (current: Buffer | undefined, mirror: string, path: string): string {
  if (current == null || current.toString('utf8').trim() === '') {
    return `${JSON.stringify({ 'registry-mirrors': [mirror] }, null, 2)}\n`
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(current.toString('utf8'))
  } catch (err) {
    throw new HostCommandError(`${path} is not valid JSON (${(err as Error).message}); fix or remove it, then run the rollout again`)
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new HostCommandError(`${path} is not a JSON object; fix it, then run the rollout again`)
  }
  const config = parsed as Record<string, unknown>
  const mirrors = config['registry-mirrors']
  if (mirrors != null && !Array.isArray(mirrors)) {
    throw new HostCommandError(`${path}: registry-mirrors is not a list; fix it, then run the rollout again`)
  }
  const list = (mirrors ?? []) as unknown[]
  const normalized = (s: unknown): string => String(s).replace(/\/+$/, '')
  if (list.some(m => normalized(m) === normalized(mirror))) {
    return current.toString('utf8')
  }
  config['registry-mirrors'] = [mirror, ...list]
  return `${JSON.stringify(config, null, 2)}\n`
}

/** containerd's `certs.d/<registry>/hosts.toml`: pull and resolve through the mirror, the registry itself as the fallback. */
export function containerdHostsToml (server: string, mirror: string): string {
  return [
    '# written by dfctl rollout: pulls go through the Shoal daemon, the registry itself is the fallback',
    `server = ${JSON.stringify(server)}`,
    '',
    `[host.${JSON.stringify(mirror)}]`,
    '  capabilities = ["pull", "resolve"]',
    ''
  ].join('\n')
}

/** The systemd unit, where systemd runs. */
export function systemdUnit (host: Host): string {
  return [
    '# written by dfctl rollout',
    '[Unit]',
    'Description=Shoal dfget daemon (registry mirror and P2P piece server)',
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    `ExecStart=${hostPath(host, PATHS.current)}/bin/dfget daemon --config ${hostPath(host, PATHS.config)}`,
    'Restart=always',
    'RestartSec=2',
    'LimitNOFILE=65536',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    ''
  ].join('\n')
}

/**
 * The supervisor where systemd does not run: keeps one daemon running, restarting it
 * with a growing pause, and gives up after 10 exits in a row that each came within
 * 10 s of its start (a bad config, not a crash). `start` returns once the pid file exists.
 */
export const SUPERVISOR_SCRIPT = `#!/bin/sh
# written by dfctl rollout: keeps the Shoal daemon running where systemd does not run
# usage: shoal-supervise start|stop|status PIDFILE LOGFILE [-- COMMAND...]
set -u
action=$1 pidfile=$2 logfile=$3
shift 3
[ "\${1:-}" = -- ] && shift
running () { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
case $action in
status)
  if running; then echo running; else echo stopped; exit 3; fi ;;
stop)
  if running; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done
    # its own process group (setsid): the daemon goes too
    kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
  fi
  rm -f "$pidfile" ;;
start)
  running && exit 0
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
  rm -f "$pidfile"
  setsid sh -c '
    pidfile=$1 logfile=$2
    shift 2
    echo $$ > "$pidfile"
    child=
    trap "[ -n \\"\\$child\\" ] && kill -TERM \\$child 2>/dev/null; wait \\$child 2>/dev/null; rm -f \\"\\$pidfile\\"; exit 0" TERM INT
    fast=0
    while [ $fast -lt 10 ]; do
      started=$(date +%s)
      "$@" >> "$logfile" 2>&1 &
      child=$!
      wait $child
      echo "shoal-supervise: daemon exited ($?)" >> "$logfile"
      if [ $(( $(date +%s) - started )) -lt 10 ]; then fast=$((fast+1)); else fast=0; fi
      sleep $fast
    done
    echo "shoal-supervise: the daemon exited 10 times in a row within 10 s of starting; giving up" >> "$logfile"
    rm -f "$pidfile"
  ' shoal-supervise "$pidfile" "$logfile" "$@" </dev/null >/dev/null 2>&1 &
  i=0
  while [ ! -f "$pidfile" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  running ;;
*)
  echo "usage: shoal-supervise start|stop|status PIDFILE LOGFILE [-- COMMAND...]" >&2; exit 2 ;;
esac
`
