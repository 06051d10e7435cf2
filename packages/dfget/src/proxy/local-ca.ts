// @peculiar/x509 resolves its ASN.1 codecs through tsyringe, which needs the Reflect
// metadata API before x509 loads; ESM evaluates imports in order, so this one is first
import 'reflect-metadata'
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto'
import { chmod, link, mkdir, open, readFile, rm, stat } from 'node:fs/promises'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { createSecureContext, type SecureContext } from 'node:tls'
import * as x509 from '@peculiar/x509'
import { CA_CERT_FILE, CA_KEY_FILE, CA_VALIDITY_MS, LEAF_RENEW_AFTER_MS, LEAF_VALIDITY_MS, MAX_CACHED_LEAVES } from './constants.ts'
import { ProxyCaError } from '../errors.ts'
import type { Logger } from '@shoal/core'

// @peculiar/x509 types its provider with the DOM's Crypto; Node's webcrypto is one
type X509Crypto = NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>
type CryptoKey = webcrypto.CryptoKey
const crypto = webcrypto as unknown as X509Crypto
const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }

/** Where the local CA lives under the daemon's data directory. */
export function caPaths (dataDir: string): { dir: string, cert: string, key: string } {
  const dir = join(dataDir, 'proxy')
  return { dir, cert: join(dir, CA_CERT_FILE), key: join(dir, CA_KEY_FILE) }
}

function pem (label: string, der: ArrayBuffer | Buffer): string {
  const b64 = Buffer.from(der as ArrayBuffer).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n$/, '')
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`
}

async function exists (path: string): Promise<boolean> {
  return stat(path).then(() => true, (err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') {
      return false
    }
    throw new ProxyCaError(`cannot look for the proxy CA at ${path}: ${err.message}`, { cause: err })
  })
}

interface Leaf { context: SecureContext, minted: number }

/**
 * The proxy's own certificate authority: generated on first start, kept in
 * `<dataDir>/proxy/` (the key 0600, read by this process only, never served or
 * logged), and used to mint short-lived leaf certificates for the registries the
 * proxy terminates TLS for. The operator makes dockerd and the OS trust `ca.crt` once.
 */
export class LocalCa {
  readonly certPem: string
  readonly certPath: string
  private readonly caCert: x509.X509Certificate
  private readonly caKey: CryptoKey
  // one key for every leaf, in memory only: minting then costs one signature
  private readonly leafKeyPem: string
  private readonly leafPublicKey: ArrayBuffer
  private readonly leaves = new Map<string, Promise<Leaf>>()

  private constructor (certPath: string, certPem: string, caKey: CryptoKey) {
    this.certPath = certPath
    this.certPem = certPem
    this.caCert = new x509.X509Certificate(certPem)
    this.caKey = caKey
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    this.leafKeyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    const spki = createPublicKey(privateKey).export({ type: 'spki', format: 'der' })
    this.leafPublicKey = spki.buffer.slice(spki.byteOffset, spki.byteOffset + spki.byteLength) as ArrayBuffer
  }

  /**
   * Loads the CA from `<dataDir>/proxy/`, generating it when neither file exists.
   *
   * @throws {ProxyCaError} when only one of the files exists or they cannot be read
   */
  static async open (dataDir: string, options: { log?: Logger } = {}): Promise<LocalCa> {
    const paths = caPaths(dataDir)
    const [hasCert, hasKey] = await Promise.all([exists(paths.cert), exists(paths.key)])
    if (hasCert !== hasKey) {
      throw new ProxyCaError(`${hasCert ? paths.key : paths.cert} is missing but ${hasCert ? paths.cert : paths.key} exists: restore it, or remove both to generate a new CA (which every client must then trust again)`)
    }
    if (!hasCert) {
      try {
        await LocalCa.generate(paths)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        const why = code === 'EEXIST' ? 'another process created it meanwhile; start again to load it' : (err as Error).message
        throw new ProxyCaError(`cannot generate the proxy CA in ${paths.dir}: ${why}`, { cause: err })
      }
      options.log?.info({ cert: paths.cert }, 'generated the proxy CA; make dockerd and the OS trust it (dfget proxy-ca prints it)')
    }
    try {
      const keyInfo = await stat(paths.key)
      if ((keyInfo.mode & 0o077) !== 0) {
        // a key others can read is a key others can mint certificates with
        await chmod(paths.key, 0o600)
        options.log?.warn({ key: paths.key }, 'the proxy CA key was readable by others; made it 0600')
      }
      const certPem = await readFile(paths.cert, 'utf8')
      const cert = new x509.X509Certificate(certPem)
      const privateKey = createPrivateKey(await readFile(paths.key))
      // leaves signed by a key that is not the certificate's would fail every client
      if (!Buffer.from(cert.publicKey.rawData).equals(createPublicKey(privateKey).export({ type: 'spki', format: 'der' }))) {
        throw new ProxyCaError(`${paths.key} is not the key of ${paths.cert}: restore the pair, or remove both to generate a new CA`)
      }
      if (cert.notAfter.getTime() < Date.now() + LEAF_VALIDITY_MS) {
        throw new ProxyCaError(`the proxy CA ${paths.cert} expires ${cert.notAfter.toISOString()}: remove ${paths.cert} and ${paths.key} to generate a new one, and trust it again`)
      }
      const der = privateKey.export({ type: 'pkcs8', format: 'der' })
      const key = await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign'])
      return new LocalCa(paths.cert, certPem, key)
    } catch (err) {
      if (err instanceof ProxyCaError) {
        throw err
      }
      throw new ProxyCaError(`cannot load the proxy CA from ${paths.dir}: ${(err as Error).message}`, { cause: err })
    }
  }

  private static async generate (paths: { dir: string, cert: string, key: string }): Promise<void> {
    await mkdir(paths.dir, { recursive: true, mode: 0o700 })
    const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])
    const now = Date.now()
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '7'),
      name: `CN=Shoal proxy CA (${hostname().replace(/[,=+<>#;"\\]/g, '_')}), O=Shoal`,
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + CA_VALIDITY_MS),
      signingAlgorithm: ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto)
      ]
    }, crypto)
    const keyDer = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)
    // key first: a crash in between leaves a key without a certificate, which open()
    // refuses with a message, never a truncated file it would load
    await writeAtomically(paths.key, pem('PRIVATE KEY', keyDer), 0o600)
    await writeAtomically(paths.cert, cert.toString('pem') + '\n', 0o644)
  }

  /** A TLS context with a leaf certificate for `host` (a DNS name or an IP address), minted once and cached. */
  async contextFor (host: string): Promise<SecureContext> {
    const cached = this.leaves.get(host)
    if (cached != null) {
      const leaf = await cached.catch(() => undefined)
      if (leaf != null && Date.now() - leaf.minted < LEAF_RENEW_AFTER_MS) {
        return leaf.context
      }
      if (this.leaves.get(host) === cached) {
        this.leaves.delete(host)
      }
    }
    const minting = this.mint(host)
    this.leaves.set(host, minting)
    // Maps iterate in insertion order: the oldest entry goes first
    while (this.leaves.size > MAX_CACHED_LEAVES) {
      const oldest = this.leaves.keys().next().value
      if (oldest == null) {
        break
      }
      this.leaves.delete(oldest)
    }
    minting.catch(() => { if (this.leaves.get(host) === minting) { this.leaves.delete(host) } })
    return (await minting).context
  }

  private async mint (host: string): Promise<Leaf> {
    const now = Date.now()
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomBytes(16).toString('hex').replace(/^[89a-f]/, '7'),
      subject: `CN=${isIP(host) !== 0 ? host : host.slice(0, 64)}`,
      issuer: this.caCert.subject,
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + LEAF_VALIDITY_MS),
      signingAlgorithm: ALG,
      publicKey: this.leafPublicKey,
      signingKey: this.caKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: isIP(host) !== 0 ? 'ip' : 'dns', value: host }]),
        await x509.AuthorityKeyIdentifierExtension.create(this.caCert, false, crypto)
      ]
    }, crypto)
    return { context: createSecureContext({ key: this.leafKeyPem, cert: cert.toString('pem') }), minted: now }
  }
}

/**
 * Writes `path` whole or not at all: a temporary file in the same directory, synced, then
 * linked into place. A link, unlike a rename, never replaces a file: two daemons starting
 * at once on one data directory cannot overwrite each other's key (EEXIST instead).
 */
async function writeAtomically (path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`
  try {
    const file = await open(tmp, 'wx', mode)
    try {
      await file.writeFile(data)
      await file.sync()
    } finally {
      await file.close()
    }
    await link(tmp, path)
  } finally {
    await rm(tmp, { force: true })
  }
  // the new directory entry survives a crash too
  const dir = await open(join(path, '..'), 'r')
  try {
    await dir.sync()
  } finally {
    await dir.close()
  }
}
