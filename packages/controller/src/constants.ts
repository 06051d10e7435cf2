/** Where a rollout puts things on a host, before the host's `root` prefix. */
export const PATHS = {
  releases: '/opt/shoal/releases',
  current: '/opt/shoal/current',
  config: '/etc/shoal/dfget.yaml',
  clusterKey: '/etc/shoal/cluster.key',
  dataDir: '/var/lib/shoal/dfget',
  backups: '/var/lib/shoal/backups',
  pidFile: '/run/shoal/dfget.pid',
  log: '/var/log/shoal/dfget.log',
  unit: '/etc/systemd/system/shoal-dfget.service',
  dockerDaemonJson: '/etc/docker/daemon.json',
  /** dockerd's per-registry certificates: `<registry>/ca.crt` */
  dockerCertsD: '/etc/docker/certs.d',
  /** the drop-in that gives dockerd the proxy, where systemd runs */
  dockerProxyDropIn: '/etc/systemd/system/docker.service.d/shoal-proxy.conf',
  dockerPidFile: '/var/run/docker.pid',
  dockerSocket: '/var/run/docker.sock',
  containerdCertsD: '/etc/containerd/certs.d',
  containerdConfig: '/etc/containerd/config.toml'
} as const

/** The daemon's listen address when the inventory does not set one (dfget's own default). */
export const DEFAULT_DAEMON_LISTEN = '127.0.0.1:65001'

/** The daemon's upstream when the inventory does not set one (dfget's own default). */
export const DEFAULT_REGISTRY = 'https://registry-1.docker.io'

/** How long a host's gate may take: /healthz up, then the test pull. @default 60 s */
export const DEFAULT_GATE_TIMEOUT = 60_000

/** One command on a host (not an upload) gives up after this long. */
export const DEFAULT_COMMAND_TIMEOUT = 120_000

/** How long putting a failed host back may take, whatever aborted its rollout. @default 5 min */
export const ROLLBACK_TIMEOUT = 300_000

/** SSH connect timeout, in seconds. */
export const SSH_CONNECT_TIMEOUT = 10

/** How long the SSH master connection outlives its last use, in seconds. */
export const SSH_CONTROL_PERSIST = 60

/** Largest file the rollout reads back from a host to compare or back up (configs, not layers). */
export const MAX_MANAGED_FILE = 1024 * 1024

/** Hosts rolled out at once, when --batch is not given. */
export const DEFAULT_BATCH = 1
