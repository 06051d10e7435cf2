import { mkdtemp, readFile, rm, stat, writeFile as fsWriteFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LocalExecutor, sh } from '../src/exec/index.ts'
import { readFiles, restoreFile, writeFile } from '../src/rollout/host-files.ts'

describe('host files over the local executor', () => {
  let dir: string
  const exec = new LocalExecutor('local')
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-host-files-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  it('reads content and mode, tells a missing file, and refuses a directory', async () => {
    const file = join(dir, 'a.json')
    await fsWriteFile(file, '{"x":1}\n', { mode: 0o640 })
    const empty = join(dir, 'empty')
    await fsWriteFile(empty, '')
    const states = await readFiles(exec, [file, join(dir, 'missing'), empty])
    expect(states.get(file)).toEqual({ path: file, exists: true, content: Buffer.from('{"x":1}\n'), mode: 0o640 })
    expect(states.get(join(dir, 'missing'))).toEqual({ path: join(dir, 'missing'), exists: false })
    expect(states.get(empty)?.content?.length).toBe(0)
    await expect(readFiles(exec, [dir])).rejects.toThrow(/exists and is not a regular file/)
  })

  it('writes with the mode asked, creating directories, and restores a file exactly or removes it', async () => {
    const file = join(dir, 'deep/er/key')
    await writeFile(exec, file, 'secret\n', 0o600)
    expect(await readFile(file, 'utf8')).toBe('secret\n')
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    const before = (await readFiles(exec, [file])).get(file)!
    await writeFile(exec, file, 'other', 0o644)
    await restoreFile(exec, before)
    expect(await readFile(file, 'utf8')).toBe('secret\n')
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    await restoreFile(exec, { path: file, exists: false })
    await expect(stat(file)).rejects.toThrow(/ENOENT/)
  })

  it('quotes paths with spaces and quotes', async () => {
    const file = join(dir, "it's here")
    await writeFile(exec, file, 'x', 0o644)
    expect((await exec.run(`cat ${sh(file)}`)).stdout).toBe('x')
  })

  it('gives up on a command at its timeout', async () => {
    await expect(exec.run('sleep 5', { timeout: 200 })).rejects.toThrow(/timed out/)
  })
})
