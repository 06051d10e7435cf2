/**
 * The walking skeleton, end to end with real parts: Debian's docker-registry holding a
 * generated two-layer image, a supernode, two daemons, and two real dockerd instances
 * pulling through their daemons as registry mirrors.
 */
import { mkdtemp } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startCountingProxy, type CountingProxy } from '../harness/counting-proxy.ts'
import { startDockerd, type Dockerd } from '../harness/dockerd.ts'
import { generateImage, type GeneratedImage } from '../harness/image.ts'
import { makeTestDir, removeTestDir } from '../harness/processes.ts'
import { daemonBytes } from '../harness/metrics.ts'
import { startDockerRegistry, type Registry } from '../harness/registry.ts'
import { requireReal } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const MiB = 1024 * 1024
const skip = requireReal({ binaries: ['dockerd', 'docker-registry'], root: true })

describe.skipIf(skip != null)(`dockerd pulls through the Shoal mirror${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let registry: Registry
  let proxy: CountingProxy
  let supernode: SupernodeHandle
  const daemons: DaemonHandle[] = []
  const dockerds: Dockerd[] = []
  let sequential: GeneratedImage
  let concurrent: GeneratedImage

  beforeAll(async () => {
    dir = await makeTestDir('e2e')
    registry = await startDockerRegistry(join(dir, 'registry'))
    proxy = await startCountingProxy(registry.url)
    // 1 MiB pieces so each layer is several pieces and peers have something to share
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [proxy.url], pieceSize: MiB })
    for (const name of ['host-a', 'host-b']) {
      daemons.push(await startDaemon({ dir, name, registry: proxy.url, supernode: supernode.url }))
    }
    for (const [i, daemon] of daemons.entries()) {
      dockerds.push(await startDockerd(join(dir, `dockerd-${i}`), daemon.url))
    }
    sequential = await generateImage(await mkdtemp(join(dir, 'img-')), 'library/shoal-seq', 'v1', [5 * MiB + 12345, 3 * MiB])
    concurrent = await generateImage(await mkdtemp(join(dir, 'img-')), 'library/shoal-con', 'v1', [4 * MiB + 777, 2 * MiB])
    await registry.push(sequential)
    await registry.push(concurrent)
  })

  afterAll(async () => {
    await Promise.allSettled(dockerds.map(async d => { await d.stop() }))
    await Promise.allSettled(daemons.map(async d => { await d.proc.stop() }))
    await supernode?.proc.stop()
    await proxy?.stop()
    await registry?.stop()
    await removeTestDir(dir)
  })

  it('pulls on one host, then the second host gets the layers from the first', async () => {
    const [a, b] = dockerds as [Dockerd, Dockerd]
    const [daemonA, daemonB] = daemons as [DaemonHandle, DaemonHandle]
    const ref = 'shoal-seq:v1'

    await a.pull(ref)
    const afterA = await daemonBytes(daemonA.url)
    await b.pull(ref)
    const afterB = await daemonBytes(daemonB.url)

    expect(await a.imageId(ref)).toBe(sequential.imageId)
    expect(await b.imageId(ref)).toBe(sequential.imageId)

    for (const layer of sequential.layers) {
      expect(proxy.blobGets.get(layer.digest), `registry GETs of ${layer.digest}`).toBe(1)
    }
    // host A was first: everything came from the supernode, nothing straight from the origin
    expect(afterA.origin).toBe(0)
    expect(afterA.supernode).toBeGreaterThanOrEqual(sequential.layerBytes)
    // host B: nothing from the origin, and the layers came from host A (the supernode only as a fallback)
    expect(afterB.origin).toBe(0)
    expect(afterB.peer).toBeGreaterThanOrEqual(sequential.layerBytes)
  })

  it('pulls on both hosts at once, and the registry still serves each layer once', async () => {
    const ref = 'shoal-con:v1'
    const before = await Promise.all(daemons.map(async d => daemonBytes(d.url)))

    await Promise.all(dockerds.map(async d => d.pull(ref)))

    for (const d of dockerds) {
      expect(await d.imageId(ref)).toBe(concurrent.imageId)
    }
    for (const layer of concurrent.layers) {
      expect(proxy.blobGets.get(layer.digest), `registry GETs of ${layer.digest}`).toBe(1)
    }
    const after = await Promise.all(daemons.map(async d => daemonBytes(d.url)))
    for (const [i, bytes] of after.entries()) {
      const was = before[i]!
      expect(bytes.origin - was.origin).toBe(0)
      expect((bytes.supernode - was.supernode) + (bytes.peer - was.peer)).toBeGreaterThanOrEqual(concurrent.layerBytes)
    }
  })
})
