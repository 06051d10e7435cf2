import { Option, type Command } from 'commander'
import { InvalidConfigError } from '@shoal/core'
import { parseSelectors, type HostSelector } from './select.ts'

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** The selection flags as commander hands them over. */
export interface SelectionFlags {
  inventory?: string
  hosts?: string
  group?: string
  selector: string[]
}

/**
 * `--inventory`, `--hosts`, `--group` and `--selector`, as every fleet command takes
 * them. `required: false` (prefetch) leaves the inventory optional: the command then
 * has other ways to name its hosts.
 */
export function withSelection (command: Command, options: { required?: boolean } = {}): Command {
  const required = options.required !== false
  const inventory = new Option('-i, --inventory <file>', `the inventory (YAML; see docs/operations.md)${required ? '' : ' (default: none: the command\'s own flags name the hosts)'}`)
  if (required) {
    inventory.makeOptionMandatory()
  }
  return command
    .addOption(inventory)
    .addOption(new Option('--hosts <names>', 'only these hosts, comma-separated (default: every host)'))
    .addOption(new Option('--group <name>', 'only the hosts of this group (default: hosts of any group or none)'))
    // repeatable rather than variadic: a variadic flag would swallow prefetch's image arguments after it
    .addOption(new Option('--selector <label=value>', 'only hosts with this label (repeatable: every one must hold)').argParser(collect).default([], 'none: any labels'))
}

/** Whether any of --hosts, --group, --selector was given. */
export function selects (flags: SelectionFlags): boolean {
  return flags.hosts != null || flags.group != null || flags.selector.length > 0
}

/** The flags as a {@link HostSelector} for `selectHosts`. */
export function selection (flags: SelectionFlags): HostSelector {
  if (flags.hosts != null && flags.hosts.split(',').every(h => h.trim() === '')) {
    throw new InvalidConfigError('--hosts is empty: give host names, comma-separated')
  }
  return {
    ...(flags.hosts != null ? { hosts: flags.hosts.split(',').map(h => h.trim()).filter(h => h !== '') } : {}),
    ...(flags.group != null ? { group: flags.group } : {}),
    labels: parseSelectors(flags.selector)
  }
}
