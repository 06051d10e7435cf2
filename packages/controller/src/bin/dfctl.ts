#!/usr/bin/env node
import { Command } from 'commander'
import { InvalidConfigError, packageVersion, runMain, writeClusterKeyFile } from '@shoal/core'
import { addPrefetchCommand } from '../prefetch/command.ts'

const program = new Command('dfctl')
  .description('Shoal controller: rolls the daemon out to a fleet and prefetches release images.\nToday: cluster keys and prefetch; rollout is planned.')
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

addPrefetchCommand(program)

program.action(() => {
  program.help({ error: true })
})

await program.parseAsync()
