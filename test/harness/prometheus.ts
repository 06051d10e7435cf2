import { writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { freePort } from './registry.ts'
import { startProcess, type ManagedProcess } from './processes.ts'
import { which } from './require-binary.ts'

export interface Prometheus {
  url: string
  proc: ManagedProcess
  /** Runs an instant query; returns [labels, value] per series. */
  query(expr: string): Promise<Array<{ metric: Record<string, string>, value: number }>>
  /** GETs an API path (such as `/api/v1/rules`) and returns its `data`. */
  api(path: string): Promise<unknown>
  stop(): Promise<void>
}

export interface PrometheusOptions {
  /** Rule files to load (absolute paths), such as deploy/prometheus/shoal-alerts.yml */
  ruleFiles?: string[]
}

/** Debian's Prometheus, scraping the given `host:port` targets (by job name) every second. */
export async function startPrometheus (dir: string, targets: Record<string, string[]>, options: PrometheusOptions = {}): Promise<Prometheus> {
  const binary = which('prometheus')
  if (binary == null) {
    throw new Error('prometheus is not installed')
  }
  await mkdir(join(dir, 'tsdb'), { recursive: true })
  const config = join(dir, 'prometheus.yml')
  await writeFile(config, [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    '  evaluation_interval: 1s',
    ...(options.ruleFiles != null && options.ruleFiles.length > 0 ? ['rule_files:', ...options.ruleFiles.map(f => `  - '${f}'`)] : []),
    'scrape_configs:',
    ...Object.entries(targets).flatMap(([job, hosts]) => [
      `  - job_name: ${job}`,
      '    static_configs:',
      `      - targets: [${hosts.map(h => `'${h}'`).join(', ')}]`
    ]),
    ''
  ].join('\n'))
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const { proc } = await startProcess({
    command: binary,
    args: [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`],
    logFile: join(dir, 'prometheus.log'),
    ready: (line) => line.includes('Server is ready to receive web requests') ? true : undefined,
    readyTimeoutMs: 60_000
  })
  return {
    url,
    proc,
    async query (expr) {
      const res = await request(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(10_000) })
      const body = await res.body.json() as { status: string, data: { result: Array<{ metric: Record<string, string>, value: [number, string] }> } }
      if (body.status !== 'success') {
        throw new Error(`query ${expr} failed: ${JSON.stringify(body)}`)
      }
      return body.data.result.map(r => ({ metric: r.metric, value: Number(r.value[1]) }))
    },
    async api (path) {
      const res = await request(`${url}${path}`, { signal: AbortSignal.timeout(10_000) })
      const body = await res.body.json() as { status: string, data: unknown }
      if (body.status !== 'success') {
        throw new Error(`${path} failed: ${JSON.stringify(body)}`)
      }
      return body.data
    },
    stop: async () => { await proc.stop() }
  }
}
