#!/usr/bin/env node
// first: re-executes node with the flags Shoal is measured with, if it was not started with them
import '@shoal/core/node-flags'
import { readFile } from 'node:fs/promises'
import { Command, Option } from 'commander'
import { clusterKeyOption, configSchemas, InvalidConfigError, createLogger, diskOptions, diskOptionsSchema, DEFAULT_RATE, MIN_PIECE_SIZE, MAX_PIECE_SIZE, packageVersion, readClusterKeyFile, resolveOptions, runMain, serveUntilAborted, sourceDefaults } from '@shoal/core'
import { z } from 'zod'
import { loadSourceTls, sourceTlsSchema } from '../source-tls-config.ts'
import { Supernode } from '../supernode.ts'

const version = packageVersion(import.meta.url)

const optionsSchema = z.object({
  config: z.string().optional(),
  listen: configSchemas.hostPort,
  p2pListen: z.array(configSchemas.multiaddr).min(1),
  p2pAnnounce: z.array(configSchemas.multiaddr).default([]),
  dataDir: configSchemas.path,
  clusterKey: configSchemas.path,
  pieceSize: z.coerce.number().int().min(MIN_PIECE_SIZE).max(MAX_PIECE_SIZE).optional(),
  sourceTimeout: configSchemas.duration,
  maxUploads: z.coerce.number().int().min(1).max(1024),
  allowSource: z.array(z.string().min(1)).default([]),
  allowPrivateRedirects: z.boolean().default(false),
  sourceTls: sourceTlsSchema,
  maxSourceBytes: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  maxSourceFetches: z.coerce.number().int().min(1).max(1024),
  ...diskOptionsSchema,
  logLevel: configSchemas.logLevel,
  uploadRate: configSchemas.byteRate,
  preheatTokenFile: configSchemas.path.optional()
})

const program = new Command('supernode')
  .description('Shoal supernode: fetches each layer from its source once, cuts it into verified pieces, serves them over libp2p and tells every daemon which pieces to fetch from whom.')
  .version(version)
  .addOption(new Option('-c, --config <file>', 'YAML file with any of these options, in camelCase; flags win (default: none)'))
  .addOption(new Option('--listen <host:port>', 'HTTP address of /metrics, /healthz and /api/v1/status').default('0.0.0.0:8002'))
  .addOption(new Option('--p2p-listen <multiaddr...>', 'libp2p (TCP) addresses of the control plane and the piece server').default(['/ip4/0.0.0.0/tcp/8003']))
  .addOption(clusterKeyOption())
  .addOption(new Option('--p2p-announce <multiaddr...>', 'addresses to announce instead of the listen addresses').default([]))
  .addOption(new Option('--data-dir <dir>', 'pieces, task index and peer key').default('/var/lib/shoal/supernode'))
  .addOption(new Option('--piece-size <bytes>', `fixed piece size (${MIN_PIECE_SIZE}..${MAX_PIECE_SIZE})` + ' (default: 4 MiB up to 200 MiB, then growing with the content)'))
  .addOption(new Option('--source-timeout <ms>', 'longest wait for a source to answer').default('30000'))
  .addOption(new Option('--max-uploads <n>', 'pieces served at once').default('32'))
  .addOption(new Option('--allow-source <origin-or-host...>', 'registries and hosts to fetch from: https://host[:port] or host[:port] (default: none, every task is refused)'))
  .addOption(new Option('--allow-private-redirects', 'follow source redirects to loopback, private and link-local addresses').default(false))
  .addOption(new Option('--source-tls <host=ca-file...>', 'a source host (host[:port]) whose certificate is checked against this PEM CA file instead of the system CAs; in the --config file a list of { host, caFile?, insecureSkipVerify? } (insecureSkipVerify: true checks no certificate) (default: none)'))
  .addOption(new Option('--max-source-bytes <bytes>', 'largest source accepted, in bytes').default(String(sourceDefaults.DEFAULT_MAX_SOURCE_BYTES), '64 GiB'))
  .addOption(new Option('--max-source-fetches <n>', 'source responses open at once').default(String(sourceDefaults.DEFAULT_MAX_CONCURRENT_FETCHES)))
  .addOption(new Option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent').default('info'))
  .addOption(new Option('--upload-rate <bytes/s>', 'piece data sent to daemons, bytes per second summed over all uploads: 10485760, 100MB, 1GiB (0: no limit)').default(String(DEFAULT_RATE)))
  .addOption(new Option('--preheat-token-file <file>', 'file holding the bearer token POST /api/v1/preheat requires (default: none, preheat over HTTP is off)'))
  .showHelpAfterError()
for (const option of diskOptions()) {
  program.addOption(option)
}

program.action(async () => {
  await runMain('supernode', async (signal) => {
    const options = await resolveOptions(program, optionsSchema)
    const logger = createLogger({ level: options.logLevel })
    const supernode = new Supernode({ logger }, {
      listen: options.listen,
      p2pListen: options.p2pListen,
      p2pAnnounce: options.p2pAnnounce,
      dataDir: options.dataDir,
      clusterKey: await readClusterKeyFile(options.clusterKey),
      ...(options.pieceSize != null ? { pieceSize: options.pieceSize } : {}),
      sourceTimeout: options.sourceTimeout,
      maxConcurrentUploads: options.maxUploads,
      allowSource: options.allowSource,
      allowPrivateRedirects: options.allowPrivateRedirects,
      sourceTls: await loadSourceTls(options.sourceTls),
      maxSourceBytes: options.maxSourceBytes,
      maxSourceFetches: options.maxSourceFetches,
      diskQuota: options.diskQuota,
      diskHighWatermark: options.diskHighWatermark,
      diskLowWatermark: options.diskLowWatermark,
      uploadRate: options.uploadRate,
      ...(options.preheatTokenFile != null ? { preheatToken: await readPreheatToken(options.preheatTokenFile) } : {}),
      version
    })
    await serveUntilAborted(supernode, signal)
  })
})

/** The token, trimmed; an empty or unreadable file is a configuration error, not an open API. */
async function readPreheatToken (path: string): Promise<string> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new InvalidConfigError(`--preheat-token-file: cannot read ${path}: ${(err as Error).message}`)
  }
  const token = text.trim()
  if (token.length < 16 || /\s/.test(token)) {
    throw new InvalidConfigError(`--preheat-token-file: ${path} must hold one token of at least 16 characters, without spaces`)
  }
  return token
}

await program.parseAsync()
