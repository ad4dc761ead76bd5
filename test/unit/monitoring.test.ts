/**
 * What operators load next to sagaflow, checked by the tools that load it:
 * the alert rules and their unit tests by promtool, the Prometheus config by
 * promtool, and the Grafana provisioning against the dashboard it provisions.
 * (test/integration/observability.test.ts checks every metric they name against
 * real /metrics pages.)
 */
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { promtool } from '../helpers/promtool';

const ROOT = path.resolve(__dirname, '../..');
const PROM = path.join(ROOT, 'deploy/prometheus');

test('promtool check rules: the alert rules are valid', async () => {
  expect(await promtool(['check', 'rules', path.join(PROM, 'alerts.yml')])).toMatch(/SUCCESS: 23 rules found/);
});

test('promtool test rules: each alert fires on the series it is for, and not on others', async () => {
  const out = await promtool(['test', 'rules', path.join(PROM, 'alerts.test.yml')]);
  expect(out).toMatch(/SUCCESS/);
  expect(out).not.toMatch(/FAILED/);
});

test('promtool test rules fails when a rule is wrong (the unit tests can fail)', async () => {
  const dir = fs.mkdtempSync(path.join(ROOT, 'deploy/prometheus/.broken-'));
  try {
    const rules = fs.readFileSync(path.join(PROM, 'alerts.yml'), 'utf8').replace('increase(sagaflow_compensation_failures_total[10m])) > 0', 'increase(sagaflow_compensation_failures_total[10m])) > 5');
    fs.writeFileSync(path.join(dir, 'alerts.yml'), rules);
    fs.copyFileSync(path.join(PROM, 'alerts.test.yml'), path.join(dir, 'alerts.test.yml'));
    expect(await promtool(['test', 'rules', path.join(dir, 'alerts.test.yml')])).toMatch(/FAILED/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('promtool check config: the Prometheus config is valid and loads the rules', async () => {
  const out = await promtool(['check', 'config', path.join(PROM, 'prometheus.yml')]);
  expect(out).toMatch(/SUCCESS: \S*prometheus\.yml is valid prometheus config file syntax/);
  expect(out).toMatch(/SUCCESS: 23 rules found/);
});

interface Variable {
  name: string;
  type: string;
  query?: string | { query: string };
  datasource?: { type: string; uid: string };
  includeAll?: boolean;
  allValue?: string;
}
interface Dashboard {
  uid: string;
  __inputs?: { name: string; type: string; pluginId: string }[];
  templating: { list: Variable[] };
  panels: { type: string; title: string; datasource?: { type: string; uid: string }; targets?: { expr: string; datasource?: { type: string; uid: string } }[] }[];
}
const dashboard = (): Dashboard => JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy/grafana/dashboards/sagaflow.json'), 'utf8')) as Dashboard;
const variableQuery = (v: Variable) => (typeof v.query === 'string' ? v.query : (v.query?.query ?? ''));

test('Grafana: every panel queries the data source chosen at import, which provisioning resolves to its Prometheus', () => {
  const sources = parse(fs.readFileSync(path.join(ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as {
    datasources: { uid: string; type: string; url: string; isDefault?: boolean }[];
  };
  const [prom] = sources.datasources;
  expect(prom).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090', isDefault: true });
  const d = dashboard();
  expect(d.uid).toBe('sagaflow');
  // Imported by hand: Grafana asks for a Prometheus data source and writes its uid where ${DS_PROMETHEUS} is.
  expect(d.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
  // Provisioned (no import step): a data source variable of the same name picks the default Prometheus.
  const ds = d.templating.list.find((v) => v.name === 'DS_PROMETHEUS');
  expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
  const text = JSON.stringify(d);
  // No data source named by a uid of one installation.
  expect([...text.matchAll(/"uid":\s*"([^"]*)"/g)].map((m) => m[1]).filter((uid) => uid !== '${DS_PROMETHEUS}' && uid !== 'sagaflow')).toEqual([]);
  const queried = d.panels.filter((p) => p.type !== 'row');
  expect(queried.length).toBeGreaterThanOrEqual(15);
  for (const p of queried) {
    expect({ panel: p.title, uid: p.datasource?.uid, targets: (p.targets ?? []).length > 0 }).toEqual({ panel: p.title, uid: '${DS_PROMETHEUS}', targets: true });
    for (const t of p.targets ?? []) expect({ panel: p.title, uid: t.datasource?.uid ?? '${DS_PROMETHEUS}' }).toEqual({ panel: p.title, uid: '${DS_PROMETHEUS}' });
  }
  // What the issue asks the dashboard to show, each by its metric.
  const exprs = queried.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
  for (const metric of [
    'sagaflow_sagas_compensated_total',
    'sagaflow_sagas_failed_total',
    'sagaflow_step_duration_seconds_bucket',
    'sagaflow_compensation_failures_total',
    'sagaflow_idempotent_replays_total',
    'temporal_activity_schedule_to_start_latency_seconds_bucket',
  ]) {
    expect(exprs).toContain(metric);
  }
});

test('Grafana: the instance and queue variables exist, list real label values, and filter the panels', () => {
  const d = dashboard();
  const vars = Object.fromEntries(d.templating.list.map((v) => [v.name, v]));
  for (const [name, label] of [['instance', 'instance'], ['queue', 'task_queue']] as const) {
    const v = vars[name];
    expect(v).toMatchObject({ type: 'query', datasource: { uid: '${DS_PROMETHEUS}' }, includeAll: true, allValue: '.*' });
    expect(variableQuery(v!)).toMatch(new RegExp(`^label_values\\((?:sagaflow|temporal|up)\\S*, ${label}\\)$`));
  }
  const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  // Every sagaflow and Temporal series a panel selects is narrowed to the chosen instances; the task queue
  // series, to the chosen queues as well.
  for (const expr of exprs) {
    for (const m of expr.matchAll(/\b((?:sagaflow|temporal)_[a-z_]+|up)(\{[^}]*\})?/g)) {
      expect({ expr, selector: m[0], instance: (m[2] ?? '').includes('instance=~"$instance"') }).toEqual({ expr, selector: m[0], instance: true });
    }
  }
  expect(exprs.filter((e) => e.includes('task_queue=~"$queue"')).length).toBeGreaterThanOrEqual(3);
  // No panel uses a variable the dashboard does not define.
  const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\$(\w+)/g)].map((m) => m[1]!)).filter((n) => !n.startsWith('__')));
  expect([...used].filter((n) => !vars[n])).toEqual([]);
});

test('Grafana: every panel query and variable query is valid PromQL once Grafana fills in its variables (promtool)', async () => {
  const d = dashboard();
  const fill = (expr: string) => expr.replace(/\$__rate_interval|\$__interval/g, '1m').replace(/\$\w+/g, '.*');
  const exprs = [
    ...d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
    // label_values(<selector>, label) lists the label of the selector's series: the selector must parse.
    ...d.templating.list.filter((v) => v.type === 'query').map((v) => /^label_values\((.*), \w+\)$/.exec(variableQuery(v))![1]!),
  ];
  const dir = fs.mkdtempSync(path.join(ROOT, 'deploy/grafana/.promql-'));
  try {
    const rules = { groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:query_${i}`, expr: fill(e) })) }] };
    fs.writeFileSync(path.join(dir, 'rules.yml'), JSON.stringify(rules));
    expect(await promtool(['check', 'rules', path.join(dir, 'rules.yml')])).toMatch(new RegExp(`SUCCESS: ${exprs.length} rules found`));
    // And the check can fail: a query broken on purpose is refused.
    fs.writeFileSync(path.join(dir, 'broken.yml'), JSON.stringify({ groups: [{ name: 'b', rules: [{ record: 'b:q', expr: fill('sum(rate(x{instance=~"$instance"}[$__rate_interval])') }] }] }));
    expect(await promtool(['check', 'rules', path.join(dir, 'broken.yml')])).toMatch(/FAILED|unclosed|parse error/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
