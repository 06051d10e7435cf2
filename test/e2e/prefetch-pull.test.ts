/**
 * Prefetch, then pull, with real parts: Debian's docker-registry behind a counting
 * proxy, a supernode, a daemon, and a real dockerd using the daemon as its registry
 * mirror. `dfget prefetch` fills the host's store through the swarm; the pull that
 * follows takes every layer from that store: the daemon's metrics show no byte from
 * the origin, a peer or the supernode for it.
 */
import { mkdtemp } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.ts'
import { startDockerd, type Dockerd } from '../harness/dockerd.ts'
import { generateImage, type GeneratedImage } from '../harness/image.ts'
import { postJob, waitForJob } from '../harness/jobs.ts'
import { daemonBytes, sample, scrape } from '../harness/metrics.ts'
import { BINARIES, makeTestDir, removeTestDir, run } from '../harness/processes.ts'
import { startDockerRegistry, type Registry } from '../harness/registry.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const MiB = 1024 * 1024
const skip = requireReal({ binaries: ['dockerd', 'docker-registry', 'script'], root: true })

describe.skipIf(skip != null)(`prefetch, then docker pull${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let registry: Registry
  let proxy: CountingProxy
  let supernode: SupernodeHandle
  let daemon: DaemonHandle
  let dockerd: Dockerd
  let image: GeneratedImage

  beforeAll(async () => {
    dir = await makeTestDir('prefetch')
    registry = await startDockerRegistry(join(dir, 'registry'))
    proxy = await startCountingProxy(registry.url)
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [proxy.url], pieceSize: MiB })
    daemon = await startDaemon({ dir, name: 'host', registry: proxy.url, supernode: supernode.url })
    dockerd = await startDockerd(join(dir, 'dockerd'), daemon.url)
    image = await generateImage(await mkdtemp(join(dir, 'img-')), 'library/shoal-pre', 'v1', [4 * MiB + 321, 2 * MiB + 5])
    await registry.push(image)
  })

  afterAll(async () => {
    await dockerd?.stop()
    await daemon?.proc.stop()
    await supernode?.proc.stop()
    await proxy?.stop()
    await registry?.stop()
    await removeTestDir(dir)
  })

  it('refuses a reference to a registry that is not its upstream, naming the host', async () => {
    const res = await postJob(`${daemon.url}/api/v1/prefetch`, { image: 'registry.example.com/team/app:1' })
    expect(res.status).toBe(400)
    expect(res.json.errors[0]?.message).toContain('registry.example.com')
    const withCredentials = await postJob(`${daemon.url}/api/v1/prefetch`, { image: `${new URL(proxy.url).host}/library/shoal-pre:v1`, credentials: { username: 'u', password: 'p' } })
    expect(withCredentials.status).toBe(400)
    expect(withCredentials.json.errors[0]?.message).toMatch(/credentials are not accepted/)
    const cli = await run(process.execPath, [BINARIES.dfget, 'prefetch', 'registry.example.com/team/app:1', '--daemon', daemon.url], { timeoutMs: 30_000 })
    expect(cli.code).toBe(2)
    expect(cli.stderr).toContain('registry.example.com')
  })

  it('dfget prefetch fills the store through the swarm; docker pull then takes every layer from it', async () => {
    const ref = `${new URL(proxy.url).host}/library/shoal-pre:v1`
    const blobs = [image.config, ...image.layers]
    // the job brings the manifest by digest too, which the pull asks for after the tag
    const total = blobs.reduce((n, b) => n + b.size, 0) + image.manifest.byteLength

    const cli = await run(process.execPath, [BINARIES.dfget, 'prefetch', ref, '--daemon', daemon.url], { timeoutMs: 120_000 })
    expect(cli.code, cli.stderr).toBe(0)
    // not a terminal: plain lines, ending with the summary
    expect(cli.stderr).toMatch(new RegExp(`dfget prefetch ${ref.replace(/[.:/]/g, '\\$&')}: .* of `))
    expect(cli.stderr).toContain(`${blobs.length + 1} blobs, ${total} bytes`)
    for (const blob of blobs) {
      expect(proxy.blobGets.get(blob.digest), blob.digest).toBe(1)
    }

    // the job, as the API shows it
    const list = await request(`${daemon.url}/api/v1/prefetch`, { signal: AbortSignal.timeout(10_000) })
    const { jobs } = await list.body.json() as { jobs: Array<{ id: string }> }
    expect(jobs).toHaveLength(1)
    const job = await waitForJob(`${daemon.url}/api/v1/prefetch/${jobs[0]!.id}`)
    expect(job.state).toBe('succeeded')
    expect(job.image).toBe(ref)
    expect(job.totalBytes).toBe(total)
    expect(job.completedBytes).toBe(total)
    expect(job.bytesBySource.origin).toBe(0)
    expect(job.bytesBySource.supernode + job.bytesBySource.peer).toBe(total)
    expect(sample(await scrape(`${daemon.url}/metrics`), 'shoal_dfget_prefetch_jobs_total', { result: 'succeeded' })).toBe(1)
    // what dfctl status shows: the daemon's bytes by source over the last hour
    const status = await request(`${daemon.url}/api/v1/status`, { signal: AbortSignal.timeout(10_000) })
    const { lastHour } = await status.body.json() as { lastHour: { windowSeconds: number, bytesBySource: Record<string, number> } }
    expect(lastHour.windowSeconds).toBeLessThan(3600)
    expect((lastHour.bytesBySource.supernode ?? 0) + (lastHour.bytesBySource.peer ?? 0)).toBe(total)

    const before = await daemonBytes(daemon.url)
    const hitsBefore = sample(await scrape(`${daemon.url}/metrics`), 'shoal_dfget_cache_hits_total')
    await dockerd.pull('shoal-pre:v1')
    expect(await dockerd.imageId('shoal-pre:v1')).toBe(image.imageId)
    const after = await daemonBytes(daemon.url)
    const hitsAfter = sample(await scrape(`${daemon.url}/metrics`), 'shoal_dfget_cache_hits_total')

    // the pull: nothing from the origin, a peer or the supernode; every blob from disk
    expect(after.origin - before.origin).toBe(0)
    expect(after.peer - before.peer).toBe(0)
    expect(after.supernode - before.supernode).toBe(0)
    expect(hitsAfter - hitsBefore).toBeGreaterThanOrEqual(image.layers.length)
    for (const blob of blobs) {
      expect(proxy.blobGets.get(blob.digest), blob.digest).toBe(1)
    }

    // a second prefetch finds it all on this host
    const again = await postJob(`${daemon.url}/api/v1/prefetch`, { image: ref })
    expect(again.status).toBe(202)
    const second = await waitForJob(`${daemon.url}/api/v1/prefetch/${again.json.id}`)
    expect(second.bytesBySource).toEqual({ local: total, peer: 0, supernode: 0, origin: 0 })

    // on a terminal (script(1) gives it one): a bar with the bytes by source and the layers done
    const tty = await run('script', ['-qec', `"${process.execPath}" "${BINARIES.dfget}" prefetch "${ref}" --daemon "${daemon.url}"`, '/dev/null'], { timeoutMs: 60_000 })
    expect(tty.code, tty.stdout).toBe(0)
    expect(tty.stdout).toMatch(/\u2588+ [\d.]+ MiB\/[\d.]+ MiB .*\/s ETA \S+ local [\d.]+ MiB 4\/4 layers/)
  })
})
