import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/**
 * Set by CI: a missing real binary (dockerd, docker-registry) fails the run instead of
 * skipping the tests that need it, so end-to-end tests can never be skipped silently.
 */
export const E2E_REQUIRED = process.env.SHOAL_E2E_REQUIRED === '1'

export function which (name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin']) {
    const candidate = join(dir, name)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

/** Debian packages for the binaries whose package has another name. */
const PACKAGES: Record<string, string> = { dockerd: 'docker.io', ip: 'iproute2', tc: 'iproute2', promtool: 'prometheus', sshd: 'openssh-server', ssh: 'openssh-client', 'ssh-keygen': 'openssh-client', containerd: 'containerd', script: 'bsdutils' }

/**
 * Checks what a suite needs. Returns the reason to skip; throws instead when
 * SHOAL_E2E_REQUIRED=1.
 */

export function requireReal (what: { binaries?: string[], root?: boolean }): string | undefined {
  const problems: string[] = []
  for (const name of what.binaries ?? []) {
    if (which(name) == null) {
      problems.push(`${name} is not installed (apt-get install ${PACKAGES[name] ?? name})`)
    }
  }
  if (what.root === true && process.getuid?.() !== 0) {
    problems.push('must run as root (dockerd, network namespaces)')
  }
  if (problems.length === 0) {
    return undefined
  }
  const reason = problems.join('; ')
  if (E2E_REQUIRED) {
    throw new Error(`SHOAL_E2E_REQUIRED=1 but ${reason}`)
  }
  return reason
}
