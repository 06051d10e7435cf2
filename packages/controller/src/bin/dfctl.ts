#!/usr/bin/env node
import { Command } from 'commander'
import { packageVersion } from '@shoal/core'

const program = new Command('dfctl')
  .description('Shoal controller: rolls the daemon out to a fleet and prefetches release images.\nNo commands yet: rollout and prefetch are planned.')
  .version(packageVersion(import.meta.url))
  .action(() => {
    program.help({ error: true })
  })

await program.parseAsync()
