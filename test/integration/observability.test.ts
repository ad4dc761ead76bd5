import { createActivities } from '../../activities';
import { startOrderSaga } from '../../src/orders/start';
import { SagaMetrics } from '../../src/observability/metrics';
import { registerOpenSagaMetrics } from '../../src/observability/open-sagas';
import { Step } from '../../workflows/order/steps';
import { ORDER_SAGA_V1_WORKFLOW_TYPE, ORDER_SAGA_WORKFLOW_TYPE } from '../../workflows/order/definitions';
import type { OrderInput } from '../../workflows/order/types';
import { activityEnvFor } from '../helpers/activity-env';
import { createTestContext, databaseUrl, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { startApi } from '../../src/api/server';
import { promtoolCheckMetrics } from '../helpers/promtool';

const ROOT = path.resolve(__dirname, '../..');
import { spawnWorker, urlWithSchema, type WorkerProcess } from '../helpers/worker-process';

let ctx: TestContext;
let worker: WorkerProcess;
const taskQueue = uniqueId('obs');

beforeAll(async () => {
  ctx = await createTestContext('obs');
  worker = spawnWorker({
    DATABASE_URL: urlWithSchema(databaseUrl(), ctx.schema),
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS!,
    PAYMENT_PROVIDER_URL: ctx.payment.url,
    CARRIER_URL: ctx.carrier.url,
    TEMPORAL_TASK_QUEUE: taskQueue,
  });
  await worker.ready;
});
afterAll(async () => {
  worker?.child.kill('SIGTERM');
  await worker?.exited;
  await ctx?.close();
});

const order = (sku: string, paymentToken: string): OrderInput => ({
  orderId: uniqueId('obs'),
  customerId: 'c',
  items: [{ sku, quantity: 1 }],
  amount: { amountMinor: 1_000, currency: 'EUR' },
  paymentToken,
  shippingAddress: { name: 'A', line1: 'B', city: 'C', postalCode: 'D', country: 'DE' },
});

/** The value of one sample in Prometheus text, or undefined. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line ? Number(line.split(' ').pop()) : undefined;
}

test('a worker process serves saga, step and Temporal runtime metrics on /metrics', async () => {
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 5 });
  const ok = await startOrderSaga(ctx.client, order(sku, 'tok_visa'), taskQueue);
  // An orderSaga too, the first type (its charge and refund on the payments queue): workers still
  // serve its runs in flight, and its activity tasks have metrics of their own.
  const declined = await startOrderSaga(ctx.client, order(sku, 'tok_decline'), taskQueue, { workflowType: ORDER_SAGA_V1_WORKFLOW_TYPE });
  expect((await ok.result()).status).toBe('completed');
  expect((await declined.result()).status).toBe('compensated');

  const url = worker.metricsUrl();
  expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  const text = await (await fetch(url!)).text();
  expect(sample(text, 'sagaflow_sagas_started_total')).toBe(2);
  expect(sample(text, 'sagaflow_sagas_completed_total')).toBe(1);
  expect(sample(text, 'sagaflow_sagas_compensated_total', '{reason="failure"}')).toBe(1);
  expect(sample(text, 'sagaflow_step_duration_seconds_count', '{step="chargePayment",outcome="ok"}')).toBe(1);
  expect(sample(text, 'sagaflow_step_duration_seconds_count', '{step="chargePayment",outcome="PaymentDeclined"}')).toBe(1);
  expect(sample(text, 'sagaflow_step_duration_seconds_count', '{step="refundPayment",outcome="ok"}')).toBe(1);
  // Temporal Core's own runtime metrics come through the same endpoint, with Prometheus's conventions:
  // counters end in _total, durations are histograms in seconds named so.
  for (const type of [ORDER_SAGA_WORKFLOW_TYPE, ORDER_SAGA_V1_WORKFLOW_TYPE]) {
    expect(sample(text, 'temporal_workflow_completed_total', `{namespace="${ctx.namespace}",service_name="temporal-core-sdk",task_queue="${taskQueue}",workflow_type="${type}"}`)).toBe(1);
  }
  expect(text).toMatch(/^temporal_request_latency_seconds_bucket\{/m);
  expect(text).not.toMatch(/^temporal_\w+_milliseconds/m);
  // And the whole page passes Prometheus's own linter.
  expect(await promtoolCheckMetrics(text)).toBe('');
});

test('every log line is JSON with ts, level and service; steps name their saga; a normal start is quiet', async () => {
  const read = () =>
    worker
      .output()
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  // The runtime orders log lines by time in a buffer of its own (~100 ms) before they are written.
  const isStep = (l: Record<string, unknown>) => l.msg === 'step attempt succeeded' || l.msg === 'step attempt failed';
  for (let i = 0; i < 50 && read().filter(isStep).length < 14; i++) await new Promise((r) => setTimeout(r, 100));
  const lines = read();
  for (const l of lines) {
    expect({ ts: typeof l.ts === 'string' && !Number.isNaN(Date.parse(l.ts)), level: l.level, service: l.service }).toEqual({
      ts: true,
      level: expect.stringMatching(/^(info|warn|error)$/),
      service: 'sagaflow-worker',
    });
    // Temporal's ~150-character task token says nothing to a reader.
    expect(l).not.toHaveProperty('taskToken');
  }
  // Up to "worker ready": a line or two, no warnings (the SDK's life-cycle chatter and webpack's stats are debug).
  const start = lines.slice(0, lines.findIndex((l) => l.msg === 'worker ready') + 1);
  expect(start.length).toBeGreaterThan(0);
  expect(start.length).toBeLessThanOrEqual(3);
  expect(start.filter((l) => l.level !== 'info')).toEqual([]);
  const steps = lines.filter(isStep);
  expect(steps.length).toBeGreaterThanOrEqual(14);
  for (const l of steps) {
    expect(typeof l.workflowId).toBe('string');
    expect(typeof l.step).toBe('string');
    expect(String(l.idempotencyKey)).toMatch(new RegExp(`^${l.workflowId as string}/`));
  }
  // A failed attempt is one line (the step observer's), not two: the SDK's 'Activity failed' is debug.
  expect(lines.filter((l) => l.msg === 'Activity failed')).toEqual([]);
  expect(lines.filter((l) => l.msg === 'step attempt failed').length).toBeGreaterThanOrEqual(1);
  // One line per saga when it ends, at the level its ending calls for.
  const ended = lines.filter((l) => l.msg === 'saga ended').map((l) => ({ level: l.level, status: l.status, failureType: l.failureType }));
  expect(ended).toEqual(
    expect.arrayContaining([
      { level: 'info', status: 'completed', failureType: undefined },
      { level: 'warn', status: 'compensated', failureType: 'PaymentDeclined' },
    ]),
  );
  for (const l of lines.filter((x) => x.msg === 'saga ended')) {
    expect(String(l.workflowId)).toMatch(/^order-/);
    expect(typeof l.durationMs).toBe('number');
  }
});

test('duplicates answered from the ledger are counted by step', async () => {
  const metrics = new SagaMetrics();
  const acts = createActivities({
    ...ctx.deps,
    ledgerHooks: { onReplay: (step) => metrics.idempotentReplays.inc({ layer: 'ledger', step }) },
  });
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 5 });
  const wf = `order-${uniqueId('dup')}`;
  const input = { key: `${wf}/${Step.reserveInventory}`, orderId: wf.slice(6), items: [{ sku, quantity: 1 }] };
  const env = activityEnvFor(input);
  await env.run(acts.reserveInventory, input);
  await env.run(acts.reserveInventory, input);
  await env.run(acts.reserveInventory, input);
  const text = await metrics.text();
  expect(sample(text, 'sagaflow_idempotent_replays_total', `{layer="ledger",step="${Step.reserveInventory}"}`)).toBe(2);
});

/** Metric names in a PromQL expression (sagaflow's and Temporal's), without the histogram series suffixes. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b((?:sagaflow|temporal)_[a-z_]+)/g)].map((m) => m[1]!.replace(/_(bucket|count|sum)$/, ''));
}

test('every metric the alert rules and the Grafana dashboard use is one a worker, the API, the intake or the relay exports', async () => {
  const families = new Set<string>();
  const collect = (text: string) => {
    for (const m of text.matchAll(/^# TYPE (\S+) /gm)) families.add(m[1]!);
    for (const m of text.matchAll(/^([a-z_]+?)(?:_bucket|_count|_sum)?[{ ]/gm)) families.add(m[1]!);
  };
  collect(await (await fetch(worker.metricsUrl()!)).text());
  const api = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue, log: () => undefined, recoveryIntervalMs: 0 });
  try {
    collect(await (await fetch(`${api.url}/metrics`)).text());
  } finally {
    await api.close();
  }
  // The intake's and the relay's own, as their processes export them (test/integration/intake-metrics.test.ts
  // and relay-metrics.test.ts scrape the real processes).
  for (const role of ['intake', 'relay'] as const) collect(await new SagaMetrics({ role }).text());
  // The open-saga gauges the API process registers beside its own (bin/api.ts), read from this schema's orders.
  const openSagas = new SagaMetrics({ role: 'api' });
  registerOpenSagaMetrics(openSagas.registry, ctx.db);
  collect(await openSagas.text());
  // Temporal Core exports these only once one happens (a workflow task failure is a bad deploy).
  const onlyOnceHappened = new Set(['temporal_workflow_task_execution_failed_total']);
  const rules = parse(fs.readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')) as { groups: { rules: { expr: string }[] }[] };
  const dashboard = JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy/grafana/dashboards/sagaflow.json'), 'utf8')) as {
    panels: { targets?: { expr: string }[] }[];
    templating: { list: { type: string; query?: string | { query: string } }[] };
  };
  const used = [
    ...rules.groups.flatMap((g) => g.rules.map((r) => ['alerts.yml', r.expr] as const)),
    ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ['sagaflow.json', t.expr] as const)),
    // The dashboard's variables list the label values of real series too.
    ...dashboard.templating.list
      .filter((v) => v.type === 'query')
      .map((v) => ['sagaflow.json', typeof v.query === 'string' ? v.query : (v.query?.query ?? '')] as const),
  ].flatMap(([file, expr]) => metricNames(expr).map((name) => ({ file, name })));
  expect(used.length).toBeGreaterThan(20);
  const unknown = used.filter(({ name }) => !families.has(name) && !onlyOnceHappened.has(name));
  expect(unknown).toEqual([]);
});
