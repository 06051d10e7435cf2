import { describe, expect, it } from 'vitest'
import { configSchemas } from '../src/config.ts'
import { parseByteRate } from '../src/rate/byte-rate.ts'

describe('parseByteRate', () => {
  it('reads plain bytes and decimal and binary units', () => {
    expect(parseByteRate('0')).toBe(0)
    expect(parseByteRate('1048576')).toBe(1048576)
    expect(parseByteRate('100MB')).toBe(100_000_000)
    expect(parseByteRate('100M')).toBe(100_000_000)
    expect(parseByteRate('10k')).toBe(10_000)
    expect(parseByteRate('10KB/s')).toBe(10_000)
    expect(parseByteRate('1GiB')).toBe(1024 ** 3)
    expect(parseByteRate('1.5MiB/s')).toBe(1.5 * 1024 ** 2)
    expect(parseByteRate('512 Ki')).toBe(512 * 1024)
    expect(parseByteRate('20B')).toBe(20)
  })

  it('refuses what it would have to guess', () => {
    for (const value of ['', 'fast', '-1', '10mb', '10Mb', '1e6', '10 MB MB', '1XB', 'MB', '1.', '99999999999TiB']) {
      expect(parseByteRate(value), value).toBeNull()
    }
  })

  it('is the --*-rate flags\' schema, with a message naming the forms', () => {
    expect(configSchemas.byteRate.parse('10MiB')).toBe(10 * 1024 ** 2)
    expect(configSchemas.byteRate.parse(2048)).toBe(2048)
    const bad = configSchemas.byteRate.safeParse('10mb')
    expect(bad.success).toBe(false)
    expect(bad.error?.issues[0]?.message).toMatch(/100MB/)
    expect(configSchemas.byteRate.safeParse(-5).success).toBe(false)
  })
})
