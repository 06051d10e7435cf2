import { readdirSync, readFileSync } from 'node:fs'

/** Clock ticks per second for /proc/<pid>/stat times; 100 on every Linux we run on. */
const CLK_TCK = 100

/**
 * CPU seconds (user + system, all threads) a process has used so far, from
 * /proc/<pid>/stat. 0 for a process that is gone.
 */
export function cpuSeconds (pid: number | undefined): number {
  if (pid == null) {
    return 0
  }
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return 0
  }
  // the command name (field 2) may hold spaces and parentheses: count from the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  return (utime + stime) / CLK_TCK
}

/**
 * CPU seconds per kind of thread of a process (`MainThread`, `V8Worker` for the garbage
 * collector's helpers, `libuv-worker` for file I/O, ...), summed over threads of a kind.
 */
export function threadCpuSeconds (pid: number | undefined): Record<string, number> {
  const out: Record<string, number> = {}
  if (pid == null) {
    return out
  }
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out[name] = (out[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / CLK_TCK
    } catch {}
  }
  return out
}

/** Peak resident set size (VmHWM) in bytes, 0 for a process that is gone. */
export function peakRss (pid: number | undefined): number {
  if (pid == null) {
    return 0
  }
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1]
    return kb == null ? 0 : Number(kb) * 1024
  } catch {
    return 0
  }
}

/** CPU seconds used by a set of processes between `start()` and `stop()`. */
export class CpuMeter {
  private readonly pids: Map<string, number | undefined>
  private readonly before = new Map<string, number>()

  constructor (pids: Record<string, number | undefined>) {
    this.pids = new Map(Object.entries(pids))
  }

  start (): this {
    for (const [name, pid] of this.pids) {
      this.before.set(name, cpuSeconds(pid))
    }
    return this
  }

  /** Seconds per process name since `start()`. */
  stop (): Record<string, number> {
    const out: Record<string, number> = {}
    for (const [name, pid] of this.pids) {
      out[name] = cpuSeconds(pid) - (this.before.get(name) ?? 0)
    }
    return out
  }
}
