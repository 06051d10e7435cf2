import { isRegistryHost } from '@shoal/core'
import { z } from 'zod'

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be letters, digits, ".", "_" or "-" (at most 63)')

/** Daemon settings: the daemon's long flag names in camelCase, written as given into its YAML config. */
export const daemonSettingsSchema = z.record(z.string().regex(/^[a-z][A-Za-z0-9]*$/, 'must be a daemon flag name in camelCase, such as dataDir'), z.unknown())

const sshSchema = z.object({
  user: z.string().min(1).default('root'),
  port: z.number().int().min(1).max(65535).default(22),
  /** Private key file; relative to the inventory file. */
  key: z.string().min(1).optional(),
  /** known_hosts file to check the host key against; relative to the inventory file. @default the user's */
  knownHostsFile: z.string().min(1).optional()
}).strict()

/** A host name or an IP address: never an ssh option (`-o...`) or anything with spaces. */
const ADDRESS_RE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*|\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\])$/

/** A registry host (`host[:port]`) as image references name it: what the daemon takes as an upstream name. */
export const isUpstreamName = isRegistryHost

const supernodeSchema = z.object({
  /** Its libp2p multiaddr (or HTTP address), as the daemons' `supernode` takes it. */
  address: z.string().min(1),
  /** Its HTTP API, such as http://sn-a:8002, for preheat. */
  api: z.string().url().regex(/^https?:/, 'must be an http:// or https:// URL').optional()
}).strict()

export const hostSchema = z.object({
  name,
  address: z.string().min(1).max(255).regex(ADDRESS_RE, 'must be a host name or an IP address'),
  /** ssh (default) or local: commands run on this machine. */
  executor: z.enum(['ssh', 'local']).default('ssh'),
  ssh: sshSchema.default({ user: 'root', port: 22 }),
  idc: z.string().min(1).max(128).optional(),
  location: z.string().min(1).max(512).regex(/^[^|]+(\|[^|]+)*$/, 'must be |-separated names from wide to narrow, such as eu|fra|rack7').optional(),
  labels: z.record(z.string().min(1), z.string()).default({}),
  runtimes: z.array(z.enum(['dockerd', 'containerd'])).max(2).default([]),
  /** Prefix of every path the rollout writes on this host (tests; chroot-like layouts). */
  root: z.string().regex(/^\/.*[^/]$/, 'must be an absolute path without a trailing /').optional(),
  /** Daemon settings for this host only, on top of the inventory's `daemon`. */
  daemon: daemonSettingsSchema.default({}),
  /** The daemon's API as the controller reaches it. @default http://<address>:<listen port> */
  daemonApi: z.string().url().optional()
}).strict()

export const inventorySchema = z.object({
  /** The cluster key file every daemon gets; relative to the inventory file. */
  clusterKeyFile: z.string().min(1),
  /**
   * Supernodes: each its address, written to every daemon's `supernode` (a plain string),
   * or `{ address, api }` where `api` is its HTTP address, which `dfctl prefetch` asks to
   * preheat.
   */
  supernodes: z.array(z.union([z.string().min(1), supernodeSchema], { error: 'must be an address, or { address, api }' })).max(16).default([]),
  /** The supernodes' preheat token (their --preheat-token-file); relative to the inventory file. */
  preheatTokenFile: z.string().min(1).optional(),
  /** Release bundle (`dfctl bundle`); relative to the inventory file; --bundle wins. */
  bundle: z.string().min(1).optional(),
  daemon: daemonSettingsSchema.default({}),
  gate: z.object({
    /** A small image on the daemon's default registry, pulled through the mirror after each host's rollout: name:tag or name@digest. */
    image: z.string().regex(/^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_.-]+|@sha256:[a-f0-9]{64})$/, 'must be a repository name with :tag or @sha256:digest, such as library/alpine:3.20').optional(),
    timeout: z.number().int().min(1000).max(600_000).optional()
  }).strict().default({}),
  groups: z.record(name, z.array(name)).default({}),
  hosts: z.array(hostSchema).min(1, 'must list at least one host')
}).strict()

export type InventoryInput = z.infer<typeof inventorySchema>
