import { readFile } from 'node:fs/promises'
import { configSchemas, InvalidConfigError } from '@shoal/core'
import { z } from 'zod'
import { DOCKER_HUB_KEY } from '../mirror/constants.ts'
import { isUpstreamName, upstreamKey, type UpstreamInit } from '../mirror/upstreams.ts'

/** One `upstreams:` entry of the daemon's config file. */
const upstreamSchema = z.object({
  name: z.string().refine(isUpstreamName, 'must be the registry host as image references name it: registry.example.com, registry.example.com:5000, docker.io'),
  url: configSchemas.httpUrl,
  username: z.string().min(1).max(1024).optional(),
  password: z.string().min(1).max(4096).optional(),
  caFile: z.string().min(1).optional(),
  insecureSkipVerify: z.boolean().default(false)
}).strict().refine(u => (u.username == null) === (u.password == null), { message: 'give both username and password, or neither', path: ['password'] })

export type UpstreamConfig = z.infer<typeof upstreamSchema>

/**
 * `upstreams`: a YAML list of `{ name, url, username?, password?, caFile?, insecureSkipVerify? }`,
 * or on the command line `name=url` (no credentials on a command line: every user of
 * the host can read it).
 */
export const upstreamsSchema = z.preprocess(v => {
  const list = typeof v === 'string' ? [v] : v
  return Array.isArray(list)
    ? list.map(e => {
      if (typeof e !== 'string') {
        return e
      }
      const eq = e.indexOf('=')
      return eq > 0 ? { name: e.slice(0, eq), url: e.slice(eq + 1) } : { name: e, url: '' }
    })
    : list
}, z.array(upstreamSchema).max(256).superRefine((list, ctx) => {
  const seen = new Set<string>()
  for (const [i, u] of list.entries()) {
    const key = upstreamKey(u.name)
    if (seen.has(key)) {
      ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `${u.name} is configured twice${key === DOCKER_HUB_KEY ? ' (docker.io, index.docker.io and registry-1.docker.io are one registry)' : ''}` })
    }
    seen.add(key)
  }
})).default([])

/**
 * The upstreams as the daemon takes them: CA files read.
 *
 * @throws {InvalidConfigError} naming the entry whose CA file cannot be read or holds no certificate
 */
export async function loadUpstreams (configs: UpstreamConfig[]): Promise<UpstreamInit[]> {
  return Promise.all(configs.map(async (c, i) => {
    let ca: string | undefined
    if (c.caFile != null) {
      try {
        ca = await readFile(c.caFile, 'utf8')
      } catch (err) {
        throw new InvalidConfigError(`--upstreams.${i}.caFile: cannot read ${c.caFile}: ${(err as Error).message}`)
      }
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
        throw new InvalidConfigError(`--upstreams.${i}.caFile: ${c.caFile} holds no PEM certificate`)
      }
    }
    return {
      name: c.name,
      url: c.url,
      ...(c.username != null && c.password != null ? { username: c.username, password: c.password } : {}),
      ...(ca != null ? { ca } : {}),
      insecureSkipVerify: c.insecureSkipVerify
    }
  }))
}
