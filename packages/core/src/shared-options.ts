import { Option } from 'commander'
import { z } from 'zod'

/**
 * Flags the supernode and the daemon both take, said once: the option with its help
 * and default, and the schema its value is checked against. Each binary adds the
 * options to its command and spreads the schema into its own.
 */
export function clusterKeyOption (): Option {
  return new Option('--cluster-key <file>', 'the cluster key every supernode and daemon shares (dfctl cluster-key generate)').default('/etc/shoal/cluster.key')
}

export function diskOptions (): Option[] {
  return [
    new Option('--disk-quota <bytes>', 'bytes of pieces kept on disk; above the high watermark the least recently used complete layers are evicted (0: no limit)').default('0'),
    new Option('--disk-high-watermark <fraction>', 'fraction of --disk-quota at which eviction starts').default('0.9'),
    new Option('--disk-low-watermark <fraction>', 'fraction of --disk-quota eviction brings usage down to').default('0.8')
  ]
}

/** The values of {@link diskOptions}, as a zod object shape. */
export const diskOptionsSchema = {
  diskQuota: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  diskHighWatermark: z.coerce.number().gt(0).max(1),
  diskLowWatermark: z.coerce.number().gt(0).max(1)
}
