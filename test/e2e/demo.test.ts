/**
 * The README's main job: the demo swarm runs to the end and prints what it promises.
 */
import { describe, expect, it } from 'vitest'
import { REPO_ROOT, run } from '../harness/processes.ts'

describe('demo (./dev demo)', () => {
  it.each(['auto', 'builtin'])('with --origin %s, distributes an image to three hosts and prints time and bytes by source per host', async (origin) => {
    const res = await run(process.execPath, [`${REPO_ROOT}scripts/demo.ts`, '--layers-mib', '6,3,1', '--origin', origin], { timeoutMs: 240_000 })
    expect(res.code, res.stderr + res.stdout).toBe(0)
    const rows = res.stdout.split('\n').filter(l => /^host-\d /.test(l))
    expect(rows).toHaveLength(3)
    for (const row of rows) {
      expect(row).toMatch(/^host-\d\s+[\d.]+ s\s+[\d.]+ MiB\s+[\d.]+ MiB\s+[\d.]+ MiB$/)
    }
    // four blobs (config and three layers), each fetched from the registry once, as
    // the demo reckons from the counting proxy in front of the registry
    expect(res.stdout).toMatch(/registry blob GETs: 4 for 4 blobs \(3 hosts\); the registry served each blob once$/m)
    expect(res.stdout).toMatch(/bytes by source, all hosts: origin 0\.0 MiB/)
    if (origin === 'builtin') {
      expect(res.stdout).toContain("the demo's built-in origin")
    }
  })

  it('refuses bad flags', async () => {
    const res = await run(process.execPath, [`${REPO_ROOT}scripts/demo.ts`, '--hosts', '0'])
    expect(res.code).toBe(2)
    expect(res.stderr).toMatch(/--hosts must be 1\.\.16/)
  })
})
