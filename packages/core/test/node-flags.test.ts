import { describe, expect, it } from 'vitest'
import { DEFAULT_NODE_FLAGS, missingNodeFlags } from '../src/index.ts'

describe('missingNodeFlags', () => {
  it('asks for the default flags node was not started with', () => {
    expect(missingNodeFlags({}, [])).toEqual(DEFAULT_NODE_FLAGS)
    expect(missingNodeFlags({}, ['--cpu-prof', DEFAULT_NODE_FLAGS[0]!])).toEqual(DEFAULT_NODE_FLAGS.slice(1))
    expect(missingNodeFlags({}, DEFAULT_NODE_FLAGS)).toEqual([])
  })

  it('takes the list from SHOAL_NODE_FLAGS, where empty means none', () => {
    expect(missingNodeFlags({ SHOAL_NODE_FLAGS: '--max-semi-space-size=4  --trace-gc' }, ['--trace-gc'])).toEqual(['--max-semi-space-size=4'])
    expect(missingNodeFlags({ SHOAL_NODE_FLAGS: '' }, [])).toEqual([])
  })

  it('asks for nothing once the process was restarted, whatever stuck', () => {
    expect(missingNodeFlags({ SHOAL_NODE_FLAGS_APPLIED: '1' }, [])).toEqual([])
  })
})
