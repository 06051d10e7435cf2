import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { configSchemas, InvalidConfigError, parseHostPort, readConfigFile, validateConfig } from '../src/index.ts'

describe('parseHostPort', () => {
  it('parses IPv4, names and bracketed IPv6', () => {
    expect(parseHostPort('127.0.0.1:65001')).toEqual({ host: '127.0.0.1', port: 65001 })
    expect(parseHostPort('localhost:0')).toEqual({ host: 'localhost', port: 0 })
    expect(parseHostPort('[::1]:8002')).toEqual({ host: '::1', port: 8002 })
  })

  it.each(['65001', '127.0.0.1', '127.0.0.1:70000', ':80', '::1:80', 'a:b'])('rejects %j', (value) => {
    expect(() => parseHostPort(value)).toThrow(InvalidConfigError)
  })
})

describe('validateConfig', () => {
  const schema = z.object({ listen: configSchemas.hostPort, registry: configSchemas.httpUrl, dataDir: configSchemas.path })

  it('names the flag of each bad value', () => {
    expect(() => validateConfig(schema, { listen: 'nope', registry: 'ftp://x', dataDir: '' }))
      .toThrow(/--listen: .*; --registry: must be an http:\/\/ or https:\/\/ URL; --data-dir: /)
  })

  it('normalises URLs without a trailing slash', () => {
    expect(validateConfig(schema, { listen: '0.0.0.0:1', registry: 'http://r:5000/', dataDir: '/d' }).registry).toBe('http://r:5000')
  })
})

describe('readConfigFile', () => {
  it('reads YAML mappings and refuses anything else', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-config-'))
    await writeFile(join(dir, 'ok.yaml'), 'listen: 127.0.0.1:1\ndataDir: /tmp/x\n')
    await writeFile(join(dir, 'list.yaml'), '- a\n- b\n')
    await writeFile(join(dir, 'bad.yaml'), 'a: [\n')
    expect(await readConfigFile(join(dir, 'ok.yaml'))).toEqual({ listen: '127.0.0.1:1', dataDir: '/tmp/x' })
    await expect(readConfigFile(join(dir, 'list.yaml'))).rejects.toThrow(/must hold a mapping/)
    await expect(readConfigFile(join(dir, 'bad.yaml'))).rejects.toThrow(/not valid YAML/)
    await expect(readConfigFile(join(dir, 'missing.yaml'))).rejects.toThrow(InvalidConfigError)
  })
})
