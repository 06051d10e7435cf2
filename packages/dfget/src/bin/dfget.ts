#!/usr/bin/env node
// first: re-executes node with the flags Shoal is measured with, if it was not started with them
import '@shoal/core/node-flags'
import { Command, Option } from 'commander'
import { clusterKeyOption, configSchemas, idcSchema, locationSchema, createLogger, diskOptions, diskOptionsSchema, DEFAULT_RATE, InvalidConfigError, packageVersion, readClusterKeyFile, resolveOptions, runMain, serveUntilAborted, sourceDefaults } from '@shoal/core'
import { z } from 'zod'
import { downloadToFile, parseHeaders } from '../cli/download-command.ts'
import { Daemon } from '../daemon.ts'
import { MAX_SUPERNODES } from '../download/supernode-ring.ts'

const version = packageVersion(import.meta.url)

const daemonSchema = z.object({
  config: z.string().optional(),
  listen: configSchemas.hostPort,
  registry: configSchemas.httpUrl,
  // one address or several (--supernode a b, or a YAML list); 'none' alone: no swarm
  supernode: z.preprocess(v => typeof v === 'string' ? [v] : v, z.array(z.union([z.literal('none'), configSchemas.multiaddr, configSchemas.httpUrl], {
    error: "must be the supernode's libp2p multiaddr (/ip4/10.0.0.5/tcp/8003), its http:// address, or none"
  })).min(1).max(MAX_SUPERNODES))
    .transform(list => list.includes('none') ? null : [...new Set(list)]),
  p2pListen: z.array(configSchemas.multiaddr).min(1),
  p2pAnnounce: z.array(configSchemas.multiaddr).default([]),
  dataDir: configSchemas.path,
  clusterKey: configSchemas.path,
  concurrency: z.coerce.number().int().min(1).max(64),
  downloadTimeout: configSchemas.duration,
  maxUploads: z.coerce.number().int().min(1).max(1024),
  hostname: z.string().min(1).max(255).optional(),
  idc: idcSchema.optional(),
  location: locationSchema.optional(),
  allowSource: z.array(z.string().min(1)).default([]),
  allowPrivateRedirects: z.boolean().default(false),
  maxSourceBytes: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  maxSourceFetches: z.coerce.number().int().min(1).max(1024),
  ...diskOptionsSchema,
  authCacheTtl: z.coerce.number().int().min(0).max(3_600_000),
  allowedHost: z.array(z.string().min(1).max(255)).default([]),
  logLevel: configSchemas.logLevel,
  swarmNoProgressTimeout: configSchemas.duration,
  supernodeCooldown: z.coerce.number().int().min(0).max(3_600_000),
  originAttempts: z.coerce.number().int().min(1).max(16),
  downloadRate: configSchemas.byteRate,
  uploadRate: configSchemas.byteRate
})

const downloadSchema = z.object({
  output: z.string({ error: 'is required: where to write the file (- for stdout)' }).min(1),
  digest: z.string().optional(),
  header: z.array(z.string()).default([]),
  daemon: configSchemas.httpUrl,
  timeout: configSchemas.duration
})

const program = new Command('dfget')
  .description('Download a file through the Shoal swarm, or run the per-host daemon (dfget daemon).')
  .version(version)
  .argument('[url]', 'http(s) URL to download')
  .addOption(new Option('-o, --output <file>', 'where to write the file; - for stdout (required, no default)'))
  .addOption(new Option('--digest <digest>', 'expected digest (sha256:<hex>); the file is kept only if it matches (default: none, no check)'))
  .addOption(new Option('-H, --header <header...>', "header for the source, 'Name: value' (repeatable)").default([]))
  .addOption(new Option('--daemon <url>', 'the local dfget daemon').default('http://127.0.0.1:65001'))
  .addOption(new Option('--timeout <ms>', 'give up after this long').default('1800000'))
  .showHelpAfterError()
  .action(async (url: string | undefined) => {
    await runMain('dfget', async (signal) => {
      if (url == null) {
        throw new InvalidConfigError('missing the URL to download (or the daemon subcommand)')
      }
      const options = await resolveOptions(program, downloadSchema)
      const summary = await downloadToFile({
        url,
        output: options.output,
        digest: options.digest,
        headers: parseHeaders(options.header),
        daemon: options.daemon,
        timeout: options.timeout,
        signal
      })
      process.stderr.write(`dfget: ${options.output === '-' ? 'wrote' : `saved ${options.output}:`} ${summary.bytes} bytes, ${summary.digest}${options.digest != null ? ' (verified)' : ''}, ${(summary.ms / 1000).toFixed(2)}s\n`)
    })
  })

const daemon = program.command('daemon')
  .description('Run the per-host daemon: the registry mirror the container runtime pulls through, fetching layers as verified pieces from peers.')
  .addOption(new Option('-c, --config <file>', 'YAML file with any of these options, in camelCase; flags win (default: none)'))
  .addOption(new Option('--listen <host:port>', 'registry mirror and API address').default('127.0.0.1:65001'))
  .addOption(new Option('--registry <url>', 'upstream registry the mirror stands in for').default('https://registry-1.docker.io'))
  .addOption(new Option('--supernode <address...>', "the supernode's libp2p multiaddr, or its http:// address; several spread tasks over them by rendezvous hashing (give every daemon the same strings) and fail over to the next; 'none' fetches everything from the origin").default(['/ip4/127.0.0.1/tcp/8003']))
  .addOption(clusterKeyOption())
  .addOption(new Option('--p2p-listen <multiaddr...>', 'libp2p (TCP) addresses peers fetch pieces from').default(['/ip4/0.0.0.0/tcp/65002']))
  .addOption(new Option('--p2p-announce <multiaddr...>', 'addresses to announce instead of the listen addresses').default([]))
  .addOption(new Option('--data-dir <dir>', 'pieces, task index and peer key').default('/var/lib/shoal/dfget'))
  .addOption(new Option('--concurrency <n>', 'pieces fetched at once per download').default('4'))
  .addOption(new Option('--download-timeout <ms>', 'longest one download may take').default('1800000'))
  .addOption(new Option('--max-uploads <n>', 'pieces served to peers at once').default('16'))
  .addOption(new Option('--hostname <name>', 'name given to the supernode (default: the OS host name)'))
  .addOption(new Option('--idc <name>', "this host's data centre: parents in the same IDC are preferred, and piece bytes are counted as same_idc or cross_idc (default: none)"))
  .addOption(new Option('--location <a|b|c>', "where this host is, |-separated from wide to narrow, e.g. 'eu|fra|rack7': after the IDC, parents sharing the longest prefix are preferred (default: none)"))
  .addOption(new Option('--allow-source <host...>', 'hosts dfget URL downloads may come from besides --registry (always allowed): https://host[:port] or host[:port] (default: none)'))
  .addOption(new Option('--allow-private-redirects', 'follow source redirects to loopback, private and link-local addresses').default(false))
  .addOption(new Option('--max-source-bytes <bytes>', 'largest source accepted from the origin, in bytes').default(String(sourceDefaults.DEFAULT_MAX_SOURCE_BYTES), '64 GiB'))
  .addOption(new Option('--max-source-fetches <n>', 'origin and registry responses open at once').default(String(sourceDefaults.DEFAULT_MAX_CONCURRENT_FETCHES)))
  .addOption(new Option('--auth-cache-ttl <ms>', "how long the registry's yes to 'may this client read this blob' is reused; 0 asks every time").default('60000'))
  .addOption(new Option('--allowed-host <name...>', 'Host header names the mirror and API answer to besides localhost, 127.0.0.1, [::1] and the listen address (default: none)').default([]))
  .addOption(new Option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent').default('info'))
  .addOption(new Option('--swarm-no-progress-timeout <ms>', 'a swarm download with no piece data arriving from anywhere for this long goes back to the origin').default('30000'))
  .addOption(new Option('--supernode-cooldown <ms>', 'once the supernode was found unavailable, new downloads go straight to the origin for this long, then one tries it again; 0 never skips it').default('30000'))
  .addOption(new Option('--origin-attempts <n>', 'tries of one origin fetch when the origin fails (5xx, unreachable), with exponential back-off and jitter; 4xx are not retried').default('4'))
  .addOption(new Option('--download-rate <bytes/s>', 'piece data from peers and the supernode plus origin bytes, bytes per second summed: 10485760, 100MB, 1GiB (0: no limit)').default(String(DEFAULT_RATE)))
  .addOption(new Option('--upload-rate <bytes/s>', 'piece data sent to other peers, bytes per second summed over all uploads: 10485760, 100MB, 1GiB (0: no limit)').default(String(DEFAULT_RATE)))
  .showHelpAfterError()
  .action(async () => {
    await runMain('dfget daemon', async (signal) => {
      const options = await resolveOptions(daemon, daemonSchema)
      const logger = createLogger({ level: options.logLevel })
      const d = new Daemon({ logger }, {
        listen: options.listen,
        registry: options.registry,
        supernode: options.supernode,
        p2pListen: options.p2pListen,
        p2pAnnounce: options.p2pAnnounce,
        dataDir: options.dataDir,
        clusterKey: await readClusterKeyFile(options.clusterKey),
        concurrency: options.concurrency,
        downloadTimeout: options.downloadTimeout,
        maxConcurrentUploads: options.maxUploads,
        authCacheTtl: options.authCacheTtl,
        allowedHosts: options.allowedHost,
        ...(options.hostname != null ? { hostname: options.hostname } : {}),
        ...(options.idc != null ? { idc: options.idc } : {}),
        ...(options.location != null ? { location: options.location } : {}),
        allowSource: options.allowSource,
        allowPrivateRedirects: options.allowPrivateRedirects,
        maxSourceBytes: options.maxSourceBytes,
        maxSourceFetches: options.maxSourceFetches,
        swarmNoProgressTimeout: options.swarmNoProgressTimeout,
        supernodeCooldown: options.supernodeCooldown,
        originAttempts: options.originAttempts,
        diskQuota: options.diskQuota,
        diskHighWatermark: options.diskHighWatermark,
        diskLowWatermark: options.diskLowWatermark,
        downloadRate: options.downloadRate,
        uploadRate: options.uploadRate,
        version
      })
      await serveUntilAborted(d, signal)
    })
  })

for (const option of diskOptions()) {
  daemon.addOption(option)
}

await program.parseAsync()
