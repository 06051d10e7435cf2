import { writeFile } from 'node:fs/promises'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { run } from './processes.ts'

export interface TestCertificate {
  /** The CA's certificate (PEM): what a client is told to trust. */
  caFile: string
  /** The server's certificate (PEM), signed by the CA, for `hosts`. */
  certFile: string
  keyFile: string
}

async function openssl (args: string[]): Promise<void> {
  const res = await run('openssl', args, { timeoutMs: 60_000 })
  if (res.code !== 0) {
    throw new Error(`openssl ${args[0] ?? ''} failed (${res.code}): ${res.stderr}`)
  }
}

/**
 * A CA of its own and a server certificate it signed for `hosts` (names or IP
 * addresses), made with openssl in `dir`: nothing on the system trusts it.
 */
export async function makeTestCertificate (dir: string, hosts: string[]): Promise<TestCertificate> {
  const caKey = join(dir, 'ca.key')
  const caFile = join(dir, 'ca.crt')
  const keyFile = join(dir, 'server.key')
  const csr = join(dir, 'server.csr')
  const certFile = join(dir, 'server.crt')
  const ext = join(dir, 'server.ext')
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=shoal-test-ca'])
  await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', csr, '-subj', `/CN=${hosts[0] ?? 'localhost'}`])
  await writeFile(ext, `subjectAltName=${hosts.map(h => `${isIP(h) !== 0 ? 'IP' : 'DNS'}:${h}`).join(',')}\n`)
  await openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext])
  return { caFile, certFile, keyFile }
}
