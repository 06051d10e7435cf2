import {
  BlobAuthorization, checkJobSource, parseImageReference, pullJobRoutes,
  type PullByteSource, type PullJobLayer, type PullJobs, type PullJobSpec, type RegistryClient, type Route, type SourceClient
} from '@shoal/core'
import { upstreamFor } from './registry-host.ts'
import { DownloadFailedError } from '../errors.ts'
import { MANIFEST_MEDIA_TYPES } from '../mirror/constants.ts'
import type { DownloadManager } from '../download/download-manager.ts'
import type { Upstreams } from '../mirror/upstreams.ts'

export interface PrefetchComponents {
  jobs: Pick<PullJobs, 'create' | 'get' | 'list'>
  downloads: Pick<DownloadManager, 'open'>
  /** Says whether a URL may be fetched at all. */
  source: Pick<SourceClient, 'check'>
  registryClient: Pick<RegistryClient, 'resolve' | 'authorization'>
}

export interface PrefetchInit {
  /** The registries an image may come from: the mirror's upstreams. */
  upstreams: Pick<Upstreams, 'resolve'>
}

/**
 * `POST /api/v1/prefetch`: pulls an image's layers (or URLs) into this host's store
 * through the swarm, each keyed exactly as the registry mirror keys it (a blob by its
 * digest, a URL by itself), so a later pull or `dfget` finds it complete on disk.
 */
export function prefetchRoutes (c: PrefetchComponents, init: PrefetchInit): Route[] {
  return pullJobRoutes({
    name: 'prefetch',
    jobs: c.jobs,
    spec: (body): PullJobSpec => {
      if (body.urls != null) {
        for (const url of body.urls) {
          checkJobSource(c.source, url)
        }
        const urls = body.urls
        return {
          resolve: async () => ({ layers: urls.map(url => ({ url, size: null })) }),
          fetch: async (layer, bySource, signal) => { await fetchLayer(c, layer, {}, bySource, signal) }
        }
      }
      const image = body.image ?? ''
      const ref = parseImageReference(image)
      const { base, credentials } = upstreamFor(ref.registry, init.upstreams)
      const withCredentials = credentials != null ? { credentials } : {}
      let auth: BlobAuthorization | undefined
      const manifestUrls = new Set<string>()
      return {
        image,
        resolve: async (signal) => {
          const resolved = await c.registryClient.resolve(base, ref, { ...withCredentials, ...(body.platforms != null ? { platforms: body.platforms } : {}), signal })
          auth = new BlobAuthorization(resolved.authorization, async (s) => c.registryClient.authorization(base, ref, { ...withCredentials, signal: s }))
          // the manifests by digest too (the index and each platform's): the mirror
          // brings them through the swarm keyed by digest like blobs, so the pull that
          // follows reads them from this host's store as well
          const digests = [...new Set([resolved.digest, ...resolved.manifests.map(m => m.digest)])]
          for (const digest of digests) {
            manifestUrls.add(`${base}/v2/${ref.repository}/manifests/${digest}`)
          }
          return {
            layers: [
              ...digests.map(digest => ({ digest, url: `${base}/v2/${ref.repository}/manifests/${digest}`, size: null })),
              ...resolved.blobs.map(b => ({ digest: b.digest, url: b.url, size: b.size }))
            ]
          }
        },
        fetch: async (layer, bySource, signal) => {
          const headers = await auth?.headers(signal) ?? {}
          // asked as the mirror asks for a manifest by digest: every manifest type accepted
          await fetchLayer(c, layer, manifestUrls.has(layer.url) ? { ...headers, accept: MANIFEST_MEDIA_TYPES.join(', ') } : headers, bySource, signal)
        }
      }
    }
  })
}

/** One layer into the store, through the download manager (the swarm, or the origin when the swarm cannot deliver). */
async function fetchLayer (c: PrefetchComponents, layer: PullJobLayer, headers: Record<string, string>, bySource: Record<PullByteSource, number>, signal: AbortSignal): Promise<void> {
  const download = await c.downloads.open({
    url: layer.url,
    ...(layer.digest != null ? { digest: layer.digest } : {}),
    ...(Object.keys(headers).length > 0 ? { headers } : {})
  }, { signal })
  if (download.via === 'local' && download.state === 'success') {
    layer.completedBytes = download.contiguous
    bySource.local += download.contiguous
    return
  }
  const seen = { origin: 0, supernode: 0, peer: 0 }
  const count = (): void => {
    layer.completedBytes = download.contiguous
    if (download.contentLength != null) {
      layer.size = download.contentLength
    }
    for (const source of ['origin', 'supernode', 'peer'] as const) {
      bySource[source] += download.bytesBySource[source] - seen[source]
      seen[source] = download.bytesBySource[source]
    }
  }
  // bounded by the job's signal (its timeout), and the download's own timeout
  while (download.state === 'running') {
    count()
    await download.waitForChange(signal)
    signal.throwIfAborted()
  }
  count()
  if (download.state === 'failed') {
    throw download.error ?? new DownloadFailedError('download failed')
  }
}
