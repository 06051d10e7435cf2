/**
 * The alerting rules, their promtool unit tests, every component's /metrics and the
 * Grafana dashboard, checked with the real promtool and a real Prometheus against a
 * running supernode and two daemons after a download, so every counter has samples.
 */
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { parse as parseYaml } from 'yaml'
import { parseSamples, sample, scrape, type Samples } from '../harness/metrics.ts'
import { startTestOrigin, type TestOrigin } from '../harness/origin.ts'
import { makeTestDir, removeTestDir, REPO_ROOT, run } from '../harness/processes.ts'
import { startPrometheus, type Prometheus } from '../harness/prometheus.ts'
import { requireReal, which } from '../harness/require-binary.ts'
import { startDaemon, startSupernode, type DaemonHandle, type SupernodeHandle } from '../harness/swarm.ts'

const skip = requireReal({ binaries: ['prometheus', 'promtool'] })

const RULES = join(REPO_ROOT, 'deploy/prometheus/shoal-alerts.yml')
const RULE_TESTS = join(REPO_ROOT, 'deploy/prometheus/shoal-alerts.test.yml')
const DASHBOARD = join(REPO_ROOT, 'deploy/grafana/shoal.json')

/** Panels that rightly show nothing on a healthy swarm, and why. */
const MAY_BE_EMPTY: Record<string, string> = {
  'Piece failures by error': 'no piece transfer failed'
}

/** Series Prometheus makes itself, found in no /metrics. */
const SYNTHETIC = new Set(['up'])

/** Metric names in a PromQL expression: identifiers with a known prefix, and `up`. */
export function metricNames (expr: string): string[] {
  // label values ("shoal-dfget") and label names never look like these
  const names = expr.replace(/"[^"]*"/g, '""').match(/\b(?:shoal|nodejs|process)_[a-zA-Z0-9_]+|\bup\b/g) ?? []
  return [...new Set(names)]
}

interface Panel { title?: string, targets?: Array<{ expr?: string }>, panels?: Panel[] }
interface Dashboard { panels: Panel[], templating: { list: Array<{ name: string, definition?: string }> } }

async function dashboardQueries (): Promise<Array<{ title: string, expr: string }>> {
  const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as Dashboard
  const queries: Array<{ title: string, expr: string }> = []
  // bounded: rows nest panels one level deep
  for (const panel of dashboard.panels.flatMap(p => [p, ...(p.panels ?? [])])) {
    for (const target of panel.targets ?? []) {
      if (target.expr != null) {
        queries.push({ title: panel.title ?? '', expr: target.expr })
      }
    }
  }
  for (const variable of dashboard.templating.list) {
    const m = variable.definition?.match(/^label_values\((.+), *\w+\)$/)
    if (m?.[1] != null) {
      queries.push({ title: `variable ${variable.name}`, expr: m[1] })
    }
  }
  return queries
}

async function ruleExpressions (): Promise<Array<{ alert: string, expr: string }>> {
  const rules = parseYaml(await readFile(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string, expr: string }> }> }
  return rules.groups.flatMap(g => g.rules)
}

/** Names of the samples in Prometheus text format. */
function sampleNames (text: string): Set<string> {
  const names = new Set<string>()
  for (const line of text.split('\n')) {
    if (line !== '' && !line.startsWith('#')) {
      names.add(line.split(/[{ ]/, 1)[0] ?? '')
    }
  }
  return names
}

/** Grafana's variables, as a query of the last minutes would expand them. */
const expandGrafana = (expr: string): string => expr
  .replaceAll('$__rate_interval', '1m').replaceAll('$__range', '5m').replaceAll('$instance', '.*')

describe.skipIf(skip != null)(`observability: rules, dashboard and /metrics${skip != null ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string
  let origin: TestOrigin
  let supernode: SupernodeHandle
  const daemons: DaemonHandle[] = []
  let prometheus: Prometheus
  /** component name → its /metrics text, scraped after the downloads */
  const exposed = new Map<string, string>()

  beforeAll(async () => {
    dir = await makeTestDir('observability')
    origin = await startTestOrigin()
    // quotas, so the disk-use queries have something to divide by
    supernode = await startSupernode({ dir: join(dir, 'supernode'), allowSource: [origin.url], pieceSize: 256 * 1024, extraArgs: ['--disk-quota', String(1024 ** 3)] })
    daemons.push(await startDaemon({ dir, name: 'host-a', registry: origin.url, supernode: supernode.url, extraArgs: ['--disk-quota', String(1024 ** 3)] }))
    daemons.push(await startDaemon({ dir, name: 'host-b', registry: origin.url, supernode: supernode.url }))
    const hostPort = (url: string): string => new URL(url).host
    prometheus = await startPrometheus(join(dir, 'prometheus'), {
      // the job names the rules and the dashboard expect (docs/observability.md)
      'shoal-supernode': [hostPort(supernode.url)],
      'shoal-dfget': daemons.map(d => hostPort(d.url))
    }, { ruleFiles: [RULES] })

    const data = randomBytes(2 * 1024 * 1024)
    const { url, digest } = origin.add('/files/release.tar', data)
    for (const d of daemons) {
      const res = await request(`${d.url}/api/v1/downloads`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url, digest }), signal: AbortSignal.timeout(60_000) })
      expect(res.statusCode).toBe(200)
      await res.body.dump()
    }
    // the response ends before the download is recorded as done: wait (bounded) for that
    for (const d of daemons) {
      for (let i = 0; i < 40 && sample(await scrape(`${d.url}/metrics`), 'shoal_dfget_downloads_total', { result: 'ok', via: 'swarm' }) < 1; i++) {
        await new Promise(resolve => setTimeout(resolve, 250))
      }
    }
    for (const [name, url] of [['supernode', supernode.url], ...daemons.map(d => [d.name, d.url])] as Array<[string, string]>) {
      const res = await request(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })
      expect(res.statusCode).toBe(200)
      exposed.set(name, await res.body.text())
    }
    // bounded wait until Prometheus scraped every target a few times, so rate() over 1m has samples
    for (let i = 0; i < 60; i++) {
      const series = await prometheus.query('count(count_over_time(up[1m]) >= 3) == 3')
      if (series.length > 0) {
        break
      }
      await new Promise(resolve => setTimeout(resolve, 500))
    }
  })

  afterAll(async () => {
    await prometheus?.stop()
    await Promise.allSettled(daemons.map(async d => { await d.proc.stop() }))
    await supernode?.proc.stop()
    await origin?.stop()
    await removeTestDir(dir)
  })

  it('promtool check rules passes on the alerting rules', async () => {
    const { stdout, stderr, code } = await run(which('promtool') ?? 'promtool', ['check', 'rules', RULES], { timeoutMs: 30_000 })
    expect({ code, stderr }).toEqual({ code: 0, stderr: '' })
    expect(stdout).toMatch(/SUCCESS: \d+ rules found/)
  })

  it('the rules pass their promtool unit tests', async () => {
    const { stdout, stderr, code } = await run(which('promtool') ?? 'promtool', ['test', 'rules', RULE_TESTS], { timeoutMs: 60_000 })
    expect({ code, stdout, stderr }).toMatchObject({ code: 0, stderr: '' })
    expect(stdout).toContain('SUCCESS')
  })

  it('every alert has a runbook-style description, a severity and a unit test that fires it', async () => {
    const rules = parseYaml(await readFile(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string, labels?: { severity?: string }, annotations?: { summary?: string, description?: string } }> }> }
    const all = rules.groups.flatMap(g => g.rules)
    expect(all.length).toBeGreaterThanOrEqual(3)
    for (const rule of all) {
      expect(rule.labels?.severity, rule.alert).toMatch(/^(critical|warning|info)$/)
      expect(rule.annotations?.summary, rule.alert).toBeTruthy()
      expect(rule.annotations?.description, rule.alert).toMatch(/Check:/)
    }
    // and a promtool unit test that sees it fire
    const tests = parseYaml(await readFile(RULE_TESTS, 'utf8')) as { tests: Array<{ alert_rule_test?: Array<{ alertname: string, exp_alerts?: unknown[] }> }> }
    const fired = new Set(tests.tests.flatMap(t => t.alert_rule_test ?? []).filter(a => (a.exp_alerts ?? []).length > 0).map(a => a.alertname))
    expect(all.map(r => r.alert).filter(name => !fired.has(name))).toEqual([])
  })

  it('the dashboard has the panels operators need, each on the templated data source', async () => {
    const dashboard = JSON.parse(await readFile(DASHBOARD, 'utf8')) as { uid: string, panels: Array<{ id: number, type: string, title: string, datasource?: { uid?: string } }> }
    expect(dashboard.uid).toBe('shoal-overview')
    const titles = dashboard.panels.map(p => p.title)
    for (const needed of ['Bytes into hosts by source', 'Origin egress saved', 'Download progress per host', 'Back-to-source reasons', 'Supernodes up', 'Scheduling latency (p50, p99)', 'Disk use against quota']) {
      expect(titles).toContain(needed)
    }
    const ids = dashboard.panels.map(p => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(dashboard.panels.filter(p => p.type !== 'row' && p.datasource?.uid !== '${datasource}').map(p => p.title)).toEqual([])
  })

  it('promtool check metrics finds nothing to complain about on any component', async () => {
    expect([...exposed.keys()]).toEqual(['supernode', 'host-a', 'host-b'])
    for (const [name, text] of exposed) {
      const { stdout, stderr, code } = await run(which('promtool') ?? 'promtool', ['check', 'metrics'], { input: text, timeoutMs: 30_000 })
      expect({ name, code, stdout, stderr }).toEqual({ name, code: 0, stdout: '', stderr: '' })
    }
  })

  it('each component exposes its disk quota and its version', async () => {
    const version = (JSON.parse(await readFile(join(REPO_ROOT, 'packages/dfget/package.json'), 'utf8')) as { version: string }).version
    const samples = (name: string): Samples => parseSamples(exposed.get(name) ?? '')
    expect(sample(samples('supernode'), 'shoal_supernode_disk_quota_bytes')).toBe(1024 ** 3)
    expect(sample(samples('host-a'), 'shoal_dfget_disk_quota_bytes')).toBe(1024 ** 3)
    expect(samples('host-b').get('shoal_dfget_disk_quota_bytes')).toBe(0)
    expect(sample(samples('host-a'), 'shoal_dfget_build_info', { version, node_version: process.version })).toBe(1)
    expect(samples('supernode').get(`shoal_supernode_build_info{version="${version}",node_version="${process.version}"}`)).toBe(1)
  })

  it('every metric the dashboard and the rules name exists in some component\'s /metrics', async () => {
    const available = new Set([...exposed.values()].flatMap(text => [...sampleNames(text)]))
    const referenced = new Map<string, string>()
    for (const { title, expr } of await dashboardQueries()) {
      for (const name of metricNames(expr)) {
        referenced.set(name, `dashboard panel "${title}"`)
      }
    }
    for (const { alert, expr } of await ruleExpressions()) {
      for (const name of metricNames(expr)) {
        referenced.set(name, `alert ${alert}`)
      }
    }
    expect(referenced.size).toBeGreaterThan(10)
    const missing = [...referenced].filter(([name]) => !SYNTHETIC.has(name) && !available.has(name))
    expect(missing.map(([name, where]) => `${name} (${where})`)).toEqual([])
  })

  it('docs/observability.md lists every shoal_* metric the components expose', async () => {
    const doc = await readFile(join(REPO_ROOT, 'docs/observability.md'), 'utf8')
    const documented = new Set([...doc.matchAll(/^\| `(shoal_[a-z0-9_]+)` \|/gm)].map(m => m[1]))
    const typed = new Set([...exposed.values()].flatMap(text => [...text.matchAll(/^# TYPE (shoal_[a-z0-9_]+) /gm)].map(m => m[1])))
    expect(typed.size).toBeGreaterThan(20)
    expect([...typed].filter(name => !documented.has(name))).toEqual([])
  })

  it('Prometheus loads the rules, and answers every dashboard query with data', async () => {
    const rules = await prometheus.api('/api/v1/rules') as { groups: Array<{ rules: Array<{ name: string, health: string, lastError?: string }> }> }
    const loaded = rules.groups.flatMap(g => g.rules)
    expect(loaded.length).toBe((await ruleExpressions()).length)
    expect(loaded.filter(r => r.health !== 'ok').map(r => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([])
    // a healthy swarm that just distributed a file through peers alarms nobody, not even pending
    const { alerts } = await prometheus.api('/api/v1/alerts') as { alerts: Array<{ labels: { alertname: string }, state: string }> }
    expect(alerts.map(a => `${a.labels.alertname} ${a.state}`)).toEqual([])

    const empty: string[] = []
    for (const { title, expr } of await dashboardQueries()) {
      // throws on a query Prometheus cannot parse
      const series = await prometheus.query(expandGrafana(expr))
      // a filter (> 0, == 0) may rightly select nothing on a healthy idle swarm
      const filters = /[<>]|==/.test(expr.replace(/\{[^}]*\}/g, ''))
      if (series.length === 0 && !filters && MAY_BE_EMPTY[title] == null) {
        empty.push(`${title}: ${expr}`)
      }
    }
    expect(empty).toEqual([])
  })
})
