import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { startOrderSaga } from '../../src/orders/start';
import { SagaMetrics } from '../../src/observability/metrics';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { createTestContext, databaseUrl, seedInventory, uniqueId, type TestContext } from '../helpers/context';
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
  const declined = await startOrderSaga(ctx.client, order(sku, 'tok_decline'), taskQueue);
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
  // Temporal Core's own runtime metrics come through the same endpoint.
  expect(text).toMatch(/^temporal_\w+/m);
});

test('every log line is JSON, and each step attempt names its workflow, step and idempotency key', async () => {
  const lines = worker
    .output()
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const steps = lines.filter((l) => l.msg === 'step attempt succeeded' || l.msg === 'step attempt failed');
  expect(steps.length).toBeGreaterThanOrEqual(10);
  for (const l of steps) {
    expect(typeof l.workflowId).toBe('string');
    expect(typeof l.step).toBe('string');
    expect(String(l.idempotencyKey)).toMatch(new RegExp(`^${l.workflowId as string}/`));
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
  const env = new MockActivityEnvironment();
  await env.run(acts.reserveInventory, input);
  await env.run(acts.reserveInventory, input);
  await env.run(acts.reserveInventory, input);
  const text = await metrics.text();
  expect(sample(text, 'sagaflow_idempotent_replays_total', `{layer="ledger",step="${Step.reserveInventory}"}`)).toBe(2);
});
