import { readFile } from 'node:fs/promises'
import { InvalidConfigError, isRegistryHost, type SourceTls } from '@shoal/core'
import { z } from 'zod'

const entrySchema = z.object({
  host: z.string().refine(isRegistryHost, 'must be host or host:port, such as registry.example.com:5000'),
  caFile: z.string().min(1).optional(),
  insecureSkipVerify: z.boolean().default(false)
}).strict().refine(e => e.caFile != null || e.insecureSkipVerify, { message: 'give caFile or insecureSkipVerify: true', path: ['caFile'] })

export type SourceTlsConfig = z.infer<typeof entrySchema>

/**
 * `sourceTls`: in the config file a list of `{ host, caFile?, insecureSkipVerify? }`; on
 * the command line `host=<CA file>`.
 */
export const sourceTlsSchema = z.preprocess(v => {
  const list = typeof v === 'string' ? [v] : v
  return Array.isArray(list)
    ? list.map(e => {
      if (typeof e !== 'string') {
        return e
      }
      const eq = e.indexOf('=')
      return eq > 0 ? { host: e.slice(0, eq), caFile: e.slice(eq + 1) } : { host: e }
    })
    : list
}, z.array(entrySchema).max(256)).default([])

/**
 * The source client's TLS settings: CA files read.
 *
 * @throws {InvalidConfigError} naming the entry whose CA file cannot be read or holds no certificate
 */
export async function loadSourceTls (entries: SourceTlsConfig[]): Promise<SourceTls[]> {
  return Promise.all(entries.map(async (e, i) => {
    let ca: string | undefined
    if (e.caFile != null) {
      try {
        ca = await readFile(e.caFile, 'utf8')
      } catch (err) {
        throw new InvalidConfigError(`--source-tls.${i}.caFile: cannot read ${e.caFile}: ${(err as Error).message}`)
      }
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
        throw new InvalidConfigError(`--source-tls.${i}.caFile: ${e.caFile} holds no PEM certificate`)
      }
    }
    return { host: e.host, ...(ca != null ? { ca } : {}), insecureSkipVerify: e.insecureSkipVerify }
  }))
}
