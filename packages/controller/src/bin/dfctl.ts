#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander'
import { InvalidConfigError, packageVersion, runMain, writeClusterKeyFile } from '@shoal/core'
import { buildBundle } from '../bundle.ts'
import { executorFor } from '../exec/index.ts'
import { doctorHost, formatDoctor } from '../fleet/doctor.ts'
import { fleetStatus, formatStatus } from '../fleet/status.ts'
import { withSelection, selection } from '../inventory/cli.ts'
import { loadInventory, selectHosts } from '../inventory/index.ts'
import { openBundle } from '../rollout/bundle-file.ts'
import { rollout, summarize } from '../rollout/rollout.ts'
import { addPrefetchCommand } from '../prefetch/command.ts'

const program = new Command('dfctl')
  .description('Shoal controller: builds the release bundle, rolls the daemon out to the hosts of an inventory, prefetches release images, and reports on the hosts (status, doctor).')
  .version(packageVersion(import.meta.url))
  .showHelpAfterError()

const clusterKey = program.command('cluster-key')
  .description('The cluster key every supernode and daemon of a cluster shares (a libp2p private network key).')

clusterKey.command('generate')
  .description('Write a new cluster key to FILE (mode 0600). An existing file is never overwritten.')
  .argument('<file>', 'where to write the key, such as /etc/shoal/cluster.key')
  .showHelpAfterError()
  .action(async (file: string) => {
    await runMain('dfctl cluster-key generate', async () => {
      if (file.trim() === '') {
        throw new InvalidConfigError('the key file path is empty')
      }
      await writeClusterKeyFile(file)
      process.stderr.write(`dfctl: wrote a new cluster key to ${file}; copy it to every supernode and daemon host (mode 0600) and point --cluster-key at it\n`)
    })
  })

function count (name: string, min: number) {
  return (value: string): number => {
    const n = Number(value)
    if (!Number.isInteger(n) || n < min) {
      // commander's own error: it prints the message and exits 1, never a stack
      throw new InvalidArgumentError(`${name} ${value}: must be a whole number of at least ${min}`)
    }
    return n
  }
}

program.command('bundle')
  .description('Build the release bundle: one tarball with the daemon, its production dependencies and the Node.js runtime (run from a built Shoal workspace).')
  .option('-o, --output <file>', 'where to write it; the name must be shoal-<version>-linux-x64.tar.gz (default: that name here)')
  .showHelpAfterError()
  .action(async (opts: { output?: string }) => {
    await runMain('dfctl bundle', async (signal) => {
      const b = await buildBundle({ ...(opts.output != null ? { output: opts.output } : {}), signal })
      process.stdout.write(`wrote ${b.path} (version ${b.version}, ${(b.bytes / 1048576).toFixed(1)} MiB)\n`)
    })
  })

withSelection(program.command('rollout'))
  .description('Bring the selected hosts to the inventory\'s desired state: release, daemon config and key, the daemon running, runtimes pointed at the mirror; each host gated (healthz, test pull) and rolled back if it fails.')
  .option('--bundle <file>', 'the release bundle (default: the inventory\'s bundle)')
  .option('--batch <n>', 'hosts per step', count('--batch', 1), 1)
  .option('--max-unavailable <n>', 'hosts of a step changed at once (default: --batch)', count('--max-unavailable', 1))
  .option('--max-failures <n>', 'stop once more hosts than this failed', count('--max-failures', 0), 0)
  .option('--dry-run', 'print each host\'s plan, with a diff of each file, and change nothing', false)
  .showHelpAfterError()
  .action(async (opts: { inventory: string, hosts?: string, group?: string, selector: string[], bundle?: string, batch: number, maxUnavailable?: number, maxFailures: number, dryRun: boolean }) => {
    await runMain('dfctl rollout', async (signal) => {
      const inventory = await loadInventory(opts.inventory)
      const hosts = selectHosts(inventory, selection(opts))
      const bundlePath = opts.bundle ?? inventory.bundle
      if (bundlePath == null) {
        throw new InvalidConfigError('no bundle: give --bundle or set bundle: in the inventory (dfctl bundle makes one)')
      }
      const bundle = await openBundle(bundlePath)
      const results = await rollout(inventory, hosts, {
        bundle,
        batch: opts.batch,
        ...(opts.maxUnavailable != null ? { maxUnavailable: opts.maxUnavailable } : {}),
        maxFailures: opts.maxFailures,
        dryRun: opts.dryRun,
        signal,
        print: (text) => { process.stdout.write(text) }
      })
      process.stdout.write(summarize(results, opts.dryRun))
      return results.some(r => r.state === 'failed') ? 1 : 0
    })
  })

withSelection(program.command('status'))
  .description('Per host: daemon version and health, cache use, whether each runtime\'s config points at the mirror, bytes by source.')
  .option('--json', 'JSON instead of a table', false)
  .showHelpAfterError()
  .action(async (opts: { inventory: string, hosts?: string, group?: string, selector: string[], json: boolean }) => {
    await runMain('dfctl status', async (signal) => {
      const inventory = await loadInventory(opts.inventory)
      const list = await fleetStatus(selectHosts(inventory, selection(opts)), { signal })
      process.stdout.write(opts.json ? `${JSON.stringify(list, null, 2)}\n` : formatStatus(list))
      return list.every(s => s.healthy) ? 0 : 1
    })
  })

program.command('doctor')
  .description('Check, in order, what a pull on a host depends on, and name the first broken link with its fix: the runtime\'s effective config, the daemon, the supernode and cluster key, a test pull, a peer\'s P2P port.')
  .requiredOption('-i, --inventory <file>', 'the inventory')
  .option('--host <name>', 'the host to check (default: every host)')
  .showHelpAfterError()
  .action(async (opts: { inventory: string, host?: string }) => {
    await runMain('dfctl doctor', async (signal) => {
      const inventory = await loadInventory(opts.inventory)
      const hosts = selectHosts(inventory, opts.host != null ? { hosts: [opts.host] } : {})
      let broken = 0
      for (const host of hosts) {
        const checks = await doctorHost({ executor: executorFor }, inventory, host, { signal })
        process.stdout.write(formatDoctor(host.name, checks))
        broken += checks.some(c => !c.ok) ? 1 : 0
      }
      return broken > 0 ? 1 : 0
    })
  })

addPrefetchCommand(program)

program.action(() => {
  program.help({ error: true })
})

await program.parseAsync()
