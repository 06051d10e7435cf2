import { createPrivateKey, randomUUID, sign, type KeyObject } from 'node:crypto'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { join } from 'node:path'
import { request } from 'undici'
import { run } from './processes.ts'
import type { AddressInfo } from 'node:net'

export interface TokenServer {
  /** The realm: where clients fetch tokens, such as http://127.0.0.1:1234/token */
  realm: string
  service: string
  issuer: string
  /** PEM file of the signing certificate, for the registry's `rootcertbundle` */
  certFile: string
  /** Tokens issued, by the user they were issued to ('' for anonymous) */
  issued: string[]
  /** Mints a token directly, as the registry's auth would for `user` (for pushing). */
  mint(user: string, access: Access[]): string
  stop(): Promise<void>
}

export interface Access { type: string, name: string, actions: string[] }

export interface TokenServerOptions {
  /** user → password and the repositories the user may pull from */
  users: Record<string, { password: string, repositories: string[] }>
  /** Repositories anyone may pull with an anonymous token, as Docker Hub's public images. @default none */
  anonymous?: string[]
  service?: string
  issuer?: string
}

const b64url = (data: Buffer | string): string => Buffer.from(data).toString('base64url')

/**
 * A small Docker registry token server (distribution's token auth): Basic credentials
 * in, an RS256 JWT out, signed by a key whose self-signed certificate rides in the `x5c`
 * header and is the registry's `rootcertbundle`. It grants `pull` on the repositories a
 * user may read, on the `anonymous` ones to anyone, and nothing else.
 */
export async function startTokenServer (dir: string, options: TokenServerOptions): Promise<TokenServer> {
  const keyFile = join(dir, 'token.key')
  const certFile = join(dir, 'token.crt')
  const made = await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=shoal-test-token-issuer'], { timeoutMs: 60_000 })
  if (made.code !== 0) {
    throw new Error(`openssl could not make the token certificate: ${made.stderr}`)
  }
  const key: KeyObject = createPrivateKey(await readFile(keyFile))
  const certPem = await readFile(certFile, 'utf8')
  const x5c = certPem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '')
  const service = options.service ?? 'shoal-test-registry'
  const issuer = options.issuer ?? 'shoal-test-issuer'
  const issued: string[] = []

  const mint = (user: string, access: Access[]): string => {
    const now = Math.floor(Date.now() / 1000)
    const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'RS256', x5c: [x5c] }))
    const claims = b64url(JSON.stringify({ iss: issuer, sub: user, aud: service, exp: now + 600, nbf: now - 10, iat: now, jti: randomUUID(), access }))
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), key)
    return `${header}.${claims}.${b64url(signature)}`
  }

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname !== '/token') {
      res.writeHead(404).end()
      return
    }
    let user = ''
    const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? '')?.[1]
    if (basic != null) {
      const [name = '', password = ''] = Buffer.from(basic, 'base64').toString().split(/:(.*)/s)
      if (options.users[name]?.password !== password) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="shoal-test-token"' }).end('{"details":"wrong credentials"}')
        return
      }
      user = name
    }
    const access: Access[] = []
    for (const scope of url.searchParams.getAll('scope')) {
      const [type, name, actions] = scope.split(':')
      const mayRead = user !== '' ? options.users[user]?.repositories.includes(name ?? '') === true : (options.anonymous ?? []).includes(name ?? '')
      if (type === 'repository' && name != null && mayRead) {
        const granted = (actions ?? '').split(',').filter(a => a === 'pull')
        if (granted.length > 0) {
          access.push({ type, name, actions: granted })
        }
      }
    }
    issued.push(user)
    const token = mint(user, access)
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 600, issued_at: new Date().toISOString() }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    realm: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`,
    service,
    issuer,
    certFile,
    issued,
    mint,
    async stop () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
    }
  }
}

/** What a registry client does on a Bearer challenge: asks the realm for a token with Basic credentials. */
export async function fetchToken (realm: string, service: string, scope: string, user?: { name: string, password: string }): Promise<string | undefined> {
  const url = new URL(realm)
  url.searchParams.set('service', service)
  url.searchParams.set('scope', scope)
  const res = await request(url, {
    headers: user != null ? { authorization: `Basic ${Buffer.from(`${user.name}:${user.password}`).toString('base64')}` } : {},
    signal: AbortSignal.timeout(10_000)
  })
  if (res.statusCode !== 200) {
    await res.body.dump()
    return undefined
  }
  return (await res.body.json() as { token: string }).token
}
