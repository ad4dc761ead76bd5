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
  expect(await promtool(['check', 'rules', path.join(PROM, 'alerts.yml')])).toMatch(/SUCCESS: 20 rules found/);
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
  expect(out).toMatch(/SUCCESS: 20 rules found/);
});

test('Grafana: the provisioned data source is the one every dashboard panel queries', () => {
  const sources = parse(fs.readFileSync(path.join(ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as {
    datasources: { uid: string; type: string; url: string }[];
  };
  const [prom] = sources.datasources;
  expect(prom).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
  const dashboard = JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy/grafana/dashboards/sagaflow.json'), 'utf8')) as {
    uid: string;
    panels: { type: string; title: string; datasource?: { uid: string }; targets?: { expr: string }[] }[];
  };
  expect(dashboard.uid).toBe('sagaflow');
  const queried = dashboard.panels.filter((p) => p.type !== 'row');
  expect(queried.length).toBeGreaterThanOrEqual(15);
  for (const p of queried) {
    expect({ panel: p.title, uid: p.datasource?.uid, targets: (p.targets ?? []).length > 0 }).toEqual({ panel: p.title, uid: prom!.uid, targets: true });
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
