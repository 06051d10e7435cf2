#!/usr/bin/env node
// first: re-executes node with the flags Shoal is measured with, if it was not started with them
import '@shoal/core/node-flags'
import { readFile } from 'node:fs/promises'
import { Command, Option } from 'commander'
import { clusterKeyOption, configSchemas, idcSchema, locationSchema, createLogger, parseImageReference, diskOptions, diskOptionsSchema, DEFAULT_RATE, InvalidConfigError, packageVersion, readClusterKeyFile, resolveOptions, runMain, serveUntilAborted, sourceDefaults } from '@shoal/core'
import { z } from 'zod'
import { downloadToFile, parseHeaders } from '../cli/download-command.ts'
import { loadUpstreams, upstreamsSchema } from '../cli/upstreams-config.ts'
import { EXIT, EXIT_CODES_HELP, withExitCodes } from '../cli/exit-codes.ts'
import { prefetchImage } from '../cli/prefetch-command.ts'
import { createProgress } from '../cli/progress.ts'
import { Daemon } from '../daemon.ts'
import { MAX_SUPERNODES } from '../download/supernode-ring.ts'
import { parseCidr } from '../proxy/access.ts'
import { caPaths } from '../proxy/local-ca.ts'

const version = packageVersion(import.meta.url)

const daemonSchema = z.object({
  config: z.string().optional(),
  listen: configSchemas.hostPort,
  registry: configSchemas.httpUrl,
  upstreams: upstreamsSchema,
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
  uploadRate: configSchemas.byteRate,
  proxyListen: configSchemas.hostPort.optional(),
  proxyAllow: z.array(z.string().superRefine((value, ctx) => {
    try {
      parseCidr(value)
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message })
    }
  })).default([]),
  proxyConnectTimeout: configSchemas.duration,
  proxyIdleTimeout: configSchemas.duration
})

// -O is Dragonfly's spelling of -o
const downloadSchema = z.preprocess((o: Record<string, unknown>) => ({ ...o, output: o.output ?? o.O }), z.object({
  url: z.string().optional(),
  output: z.string({ error: 'is required: where to write the file (- for stdout)' }).min(1),
  O: z.string().optional(),
  digest: z.string().optional(),
  header: z.array(z.string()).default([]),
  daemon: configSchemas.httpUrl,
  timeout: configSchemas.duration,
  progress: z.boolean().default(true)
}))

const prefetchSchema = z.object({
  platform: z.array(z.string()).default([]),
  daemon: configSchemas.httpUrl,
  timeout: configSchemas.duration,
  progress: z.boolean().default(true)
})

const program = new Command('dfget')
  // the subcommands' --daemon and --timeout are their own, after the subcommand's name
  .enablePositionalOptions()
  // usage errors commander finds (unknown flag, missing argument) exit 2, like ours; inherited by the subcommands
  .exitOverride((err) => { process.exit(err.exitCode === 0 ? 0 : EXIT.USAGE) })
  .description('Download a file through the Shoal swarm (dfget URL -o FILE), fill this host\'s store with an image (dfget prefetch), or run the per-host daemon (dfget daemon).')
  .version(version)
  .argument('[url]', 'http(s) URL to download (or -u/--url)')
  .addOption(new Option('-u, --url <url>', 'the URL to download, as an option (Dragonfly\'s dfget spelling; default: the argument)'))
  .addOption(new Option('-o, --output <file>', 'where to write the file; - for stdout; -O is the same (required, no default)'))
  .addOption(new Option('-O <file>', 'same as --output (Dragonfly\'s dfget spelling) (default: none)').hideHelp())
  .addOption(new Option('--digest <digest>', 'expected digest (sha256:<hex>); the file is kept only if it matches (default: none, no check)'))
  .addOption(new Option('-H, --header <header...>', "header for the source, 'Name: value' (repeatable)").default([]))
  .addOption(new Option('--daemon <url>', 'the local dfget daemon').default('http://127.0.0.1:65001'))
  .addOption(new Option('--timeout <ms>', 'give up after this long').default('1800000'))
  .addOption(new Option('--no-progress', 'no progress bar or lines on stderr (default: a bar on a terminal, a line every 2 s elsewhere)'))
  .addHelpText('after', EXIT_CODES_HELP)
  .showHelpAfterError()
  .action(async (arg: string | undefined) => {
    await runMain('dfget', async (signal) => withExitCodes('dfget', async () => {
      if (arg == null && program.opts().url == null) {
        throw new InvalidConfigError('missing the URL to download (an argument or -u/--url), or a subcommand (daemon, prefetch)')
      }
      const options = await resolveOptions(program, downloadSchema)
      const url = options.url ?? arg ?? ''
      if (options.url != null && arg != null && arg !== options.url) {
        throw new InvalidConfigError(`two URLs given: ${arg} and --url ${options.url}`)
      }
      const progress = options.progress ? createProgress({ label: `dfget ${url}` }) : undefined
      let summary
      try {
        summary = await downloadToFile({
          url,
          output: options.output,
          digest: options.digest,
          headers: parseHeaders(options.header),
          daemon: options.daemon,
          timeout: options.timeout,
          signal,
          ...(progress != null ? { onProgress: (p) => { progress.update({ completed: p.written, total: p.total, ...(p.bySource != null ? { bySource: p.bySource } : {}), ...(p.via != null ? { note: `via ${p.via}` } : {}) }) } } : {})
        })
      } finally {
        progress?.stop()
      }
      process.stderr.write(`dfget: ${options.output === '-' ? 'wrote' : `saved ${options.output}:`} ${summary.bytes} bytes, ${summary.digest}${options.digest != null ? ' (verified)' : ''}, ${(summary.ms / 1000).toFixed(2)}s\n`)
    }))
  })

const prefetch = program.command('prefetch')
  .description('Pull an image\'s layers into this host\'s store through the swarm (the daemon\'s POST /api/v1/prefetch), so a later docker pull takes every layer from disk.')
  .argument('<image>', 'image reference: registry/name:tag, registry/name@sha256:<hex>, or a Docker Hub short form (alpine)')
  .addOption(new Option('--platform <os/arch...>', 'platforms to take from a multi-platform image (default: linux/amd64)'))
  .addOption(new Option('--daemon <url>', 'the local dfget daemon').default('http://127.0.0.1:65001'))
  .addOption(new Option('--timeout <ms>', 'give up waiting after this long (the job goes on in the daemon)').default('3600000'))
  .addOption(new Option('--no-progress', 'no progress bar or lines on stderr (default: a bar on a terminal, a line every 2 s elsewhere)'))
  .addHelpText('after', EXIT_CODES_HELP)
  .showHelpAfterError()
  .action(async (image: string) => {
    await runMain('dfget prefetch', async (signal) => withExitCodes('dfget prefetch', async () => {
      const options = await resolveOptions(prefetch, prefetchSchema)
      parseImageReference(image)
      const progress = options.progress ? createProgress({ label: `dfget prefetch ${image}` }) : undefined
      let job
      try {
        job = await prefetchImage({
          image,
          platforms: options.platform,
          daemon: options.daemon,
          timeout: options.timeout,
          signal,
          ...(progress != null ? { onProgress: (j) => { progress.update({ completed: j.completedBytes, total: j.totalBytes, bySource: j.bytesBySource, note: `${j.layers.filter(l => l.state === 'succeeded').length}/${j.layers.length} layers` }) } } : {})
        })
      } finally {
        progress?.stop()
      }
      const sources = Object.entries(job.bytesBySource).map(([s, n]) => `${s} ${n}`).join(', ')
      process.stderr.write(`dfget prefetch: ${image}: ${job.layers.length} blobs, ${job.completedBytes} bytes (${sources}), job ${job.id}\n`)
    }))
  })

const daemon = program.command('daemon')
  .description('Run the per-host daemon: the registry mirror the container runtime pulls through, fetching layers as verified pieces from peers.')
  .addOption(new Option('-c, --config <file>', 'YAML file with any of these options, in camelCase; flags win (default: none)'))
  .addOption(new Option('--listen <host:port>', 'registry mirror and API address').default('127.0.0.1:65001'))
  .addOption(new Option('--registry <url>', 'default upstream registry: the one requests without ?ns= go to').default('https://registry-1.docker.io'))
  .addOption(new Option('--upstreams <name=url...>', "further upstream registries, picked by containerd's ?ns=<name>: name is the registry host as image references name it (registry.example.com:5000), url its API base URL. In the --config file a list of { name, url, username?, password?, caFile?, insecureSkipVerify? }: the daemon's own credentials there (used when a client sends none; anyone who can reach the mirror then reads what they read), a PEM CA file for its certificate, or no certificate check. Unknown ?ns= names get 404 (default: none)"))
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
  .addOption(new Option('--proxy-listen <host:port>', "HTTP(S) proxy for an unmodified dockerd (its HTTPS_PROXY): CONNECTs to an upstream (--registry, --upstreams) are served by the mirror with a certificate from the proxy CA (<data-dir>/proxy/ca.crt, generated on first start), other hosts are tunnelled untouched (default: off)"))
  .addOption(new Option('--proxy-allow <cidr...>', 'networks whose peers may use the proxy besides loopback, such as 10.0.0.0/8 (default: loopback only)'))
  .addOption(new Option('--proxy-connect-timeout <ms>', 'longest a proxy tunnel or forwarded request may take to connect to its target').default('10000'))
  .addOption(new Option('--proxy-idle-timeout <ms>', 'a proxy tunnel or connection with no traffic either way for this long is closed').default('300000'))
  .showHelpAfterError()
  .action(async () => {
    await runMain('dfget daemon', async (signal) => {
      const options = await resolveOptions(daemon, daemonSchema)
      const logger = createLogger({ level: options.logLevel })
      const d = new Daemon({ logger }, {
        listen: options.listen,
        registry: options.registry,
        upstreams: await loadUpstreams(options.upstreams),
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
        ...(options.proxyListen != null ? { proxyListen: options.proxyListen } : {}),
        proxyAllow: options.proxyAllow,
        proxyConnectTimeout: options.proxyConnectTimeout,
        proxyIdleTimeout: options.proxyIdleTimeout,
        version
      })
      await serveUntilAborted(d, signal)
    })
  })

const proxyCaSchema = z.object({ dataDir: configSchemas.path, path: z.boolean().default(false) })

const proxyCa = program.command('proxy-ca')
  .description("Print the certificate of the daemon's proxy CA (PEM), for dockerd and the OS trust store to trust; the daemon generates it on its first start with --proxy-listen. The key stays in the data directory.")
  .addOption(new Option('--data-dir <dir>', "the daemon's data directory").default('/var/lib/shoal/dfget'))
  .addOption(new Option('--path', "print the certificate's path instead").default(false))
  .showHelpAfterError()
  .action(async () => {
    await runMain('dfget proxy-ca', async () => {
      const options = await resolveOptions(proxyCa, proxyCaSchema)
      const { cert } = caPaths(options.dataDir)
      let pem: string
      try {
        pem = await readFile(cert, 'utf8')
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new InvalidConfigError(`no proxy CA at ${cert} yet: start the daemon once with --proxy-listen (and this --data-dir)`)
        }
        throw err
      }
      process.stdout.write(options.path ? `${cert}\n` : pem)
    })
  })

for (const option of diskOptions()) {
  daemon.addOption(option)
}

await program.parseAsync()
