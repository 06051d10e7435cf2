import { sample, type Samples } from '../../harness/metrics.ts'

/** What a Shoal run did, from the processes' metrics and /proc. */
export interface ShoalRunStats {
  /** Piece bytes the supernodes sent (those still running at the end: a killed one's are not counted) */
  supernodeUploadBytes: number
  /** Bytes into the hosts, by source, summed over hosts */
  bytesBySource: { origin: number, supernode: number, peer: number }
  /** Verified bytes the daemons streamed to their clients (skopeo), summed over hosts */
  servedBytes: number
  /** shoal_dfget_back_to_source_total by reason, summed over hosts */
  backToSource: Record<string, number>
  /** Failed piece transfers by error code, summed over hosts */
  pieceErrors: Record<string, number>
  /** CPU seconds of the supernodes and every daemon during the pulls (not counting what a fault killed) */
  cpuSeconds: number
  /** The supernode's share of cpuSeconds */
  supernodeCpuSeconds: number
  /** The daemons' CPU seconds by kind of thread (MainThread, V8Worker, libuv-worker, ...) */
  daemonCpuByThread: Record<string, number>
  /** Highest peak RSS (VmHWM) of any daemon, and of any supernode, bytes */
  daemonPeakRss: number
  supernodePeakRss: number
}

/** Metrics of the supernodes (in order) and the measured daemons (in host order) at one moment. */
export interface ShoalSamples {
  supernodes: Samples[]
  daemons: Samples[]
}

/** What the measured pull did, from metrics before and after it (the warm-up is not counted). */
export function shoalStats (before: ShoalSamples, after: ShoalSamples, cpu: number, supernodeCpu: number): Omit<ShoalRunStats, 'daemonPeakRss' | 'supernodePeakRss' | 'daemonCpuByThread'> {
  const delta = (a: Samples, b: Samples | undefined): Samples => new Map([...a].map(([k, v]) => [k, v - (b?.get(k) ?? 0)]))
  const stats: Omit<ShoalRunStats, 'daemonPeakRss' | 'supernodePeakRss' | 'daemonCpuByThread'> = {
    supernodeUploadBytes: after.supernodes.reduce((sum, sn, i) => sum + sample(delta(sn, before.supernodes[i]), 'shoal_supernode_upload_bytes_total'), 0),
    bytesBySource: { origin: 0, supernode: 0, peer: 0 },
    servedBytes: 0,
    backToSource: {},
    pieceErrors: {},
    cpuSeconds: cpu,
    supernodeCpuSeconds: supernodeCpu
  }
  after.daemons.forEach((daemon, i) => {
    const samples = delta(daemon, before.daemons[i])
    stats.servedBytes += sample(samples, 'shoal_dfget_served_bytes_total')
    for (const source of ['origin', 'supernode', 'peer'] as const) {
      stats.bytesBySource[source] += sample(samples, 'shoal_dfget_download_bytes_total', { source })
    }
    for (const [key, value] of samples) {
      const reason = /^shoal_dfget_back_to_source_total\{reason="([^"]*)"\}$/.exec(key)?.[1]
      if (reason != null && value > 0) {
        stats.backToSource[reason] = (stats.backToSource[reason] ?? 0) + value
      }
      const piece = /^shoal_dfget_pieces_total\{source="([^"]*)",result="([^"]*)"\}$/.exec(key)
      if (piece != null && piece[2] !== 'ok' && value > 0) {
        const k = `${piece[1]}:${piece[2]}`
        stats.pieceErrors[k] = (stats.pieceErrors[k] ?? 0) + value
      }
    }
  })
  return stats
}
