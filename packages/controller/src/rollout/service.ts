import { PATHS } from '../constants.ts'
import { sh, type Executor } from '../exec/index.ts'
import type { Host } from '../inventory/load.ts'
import { runChecked } from './host-files.ts'
import { hostPath } from './desired.ts'

export type ServiceManager = 'systemd' | 'supervisor'

/** systemd where it runs (and no root prefix: a prefixed host is a test or a chroot layout), the supervisor otherwise. */
export async function detectServiceManager (exec: Executor, host: Host, options: { signal?: AbortSignal } = {}): Promise<ServiceManager> {
  if (host.root !== '') {
    return 'supervisor'
  }
  const res = await exec.run('[ -d /run/systemd/system ] && command -v systemctl >/dev/null', options)
  return res.code === 0 ? 'systemd' : 'supervisor'
}

const UNIT = 'shoal-dfget'

function supervise (host: Host, action: 'start' | 'stop' | 'status'): string {
  const command = action === 'start' ? ` -- ${sh(`${hostPath(host, PATHS.current)}/bin/dfget`)} daemon --config ${sh(hostPath(host, PATHS.config))}` : ''
  return `${sh(hostPath(host, '/opt/shoal/bin/shoal-supervise'))} ${action} ${sh(hostPath(host, PATHS.pidFile))} ${sh(hostPath(host, PATHS.log))}${command}`
}

/** Where the supervisor script lives on the host. */
export const SUPERVISOR_PATH = '/opt/shoal/bin/shoal-supervise'

export async function isRunning (exec: Executor, host: Host, manager: ServiceManager, options: { signal?: AbortSignal } = {}): Promise<boolean> {
  const script = manager === 'systemd'
    ? `systemctl is-active --quiet ${UNIT}`
    : `[ -x ${sh(hostPath(host, SUPERVISOR_PATH))} ] && ${supervise(host, 'status')} >/dev/null`
  return (await exec.run(script, options)).code === 0
}

export async function startDaemon (exec: Executor, host: Host, manager: ServiceManager, options: { restart: boolean, signal?: AbortSignal }): Promise<void> {
  if (manager === 'systemd') {
    await runChecked(exec, `systemctl daemon-reload && systemctl enable --quiet ${UNIT} && systemctl ${options.restart ? 'restart' : 'start'} ${UNIT}`, 'starting the daemon (systemd)', options)
    return
  }
  if (options.restart) {
    await runChecked(exec, supervise(host, 'stop'), 'stopping the daemon', options)
  }
  await runChecked(exec, supervise(host, 'start'), 'starting the daemon (supervisor)', options)
}

export async function stopDaemon (exec: Executor, host: Host, manager: ServiceManager, options: { signal?: AbortSignal } = {}): Promise<void> {
  const script = manager === 'systemd'
    ? `systemctl stop ${UNIT} || true`
    : `if [ -x ${sh(hostPath(host, SUPERVISOR_PATH))} ]; then ${supervise(host, 'stop')}; fi`
  await runChecked(exec, script, 'stopping the daemon', options)
}

/** SIGHUP to dockerd (it re-reads daemon.json's reloadable keys, registry-mirrors among them), when it runs. */
export async function reloadDockerd (exec: Executor, host: Host, options: { signal?: AbortSignal } = {}): Promise<boolean> {
  const pid = sh(hostPath(host, PATHS.dockerPidFile))
  const res = await exec.run(`if [ -f ${pid} ] && kill -0 "$(cat ${pid})" 2>/dev/null; then kill -HUP "$(cat ${pid})" && echo reloaded; fi`, options)
  return res.code === 0 && res.stdout.includes('reloaded')
}
