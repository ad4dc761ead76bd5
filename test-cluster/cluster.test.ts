/**
 * sagaflow on a self-hosted Temporal cluster on PostgreSQL (dev/temporal-cluster.ts):
 * 2 frontend, 2 history, 2 matching and 1 worker host as separate processes. The
 * order saga's paths run on it; then, with sagas in flight, one history host, one
 * matching host and one frontend are SIGKILLed and restarted in turn, and every
 * saga must finish exactly once with the books reconciled.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { auditBooks } from '../src/orders/audit';
import { startOrderSaga } from '../src/orders/start';
import { findTemporalCli } from '../dev/temporal';
import { ensureServerTools, startTemporalCluster, type TemporalCluster } from '../dev/temporal-cluster';
import { createSagaWorker } from '../workers/worker';
import { cancelUpdate, statusQuery } from '../workflows/order-saga';
import type { OrderInput } from '../workflows/order/types';
import { addFault, createTestContext, databaseUrl, orderInput, seedInventory, uniqueId, type TestContext } from '../test/helpers/context';

let ctx: TestContext;
let cluster: TemporalCluster;
let client: Client;
let connection: Connection;
let workerConnection: NativeConnection;
let stopWorker: () => Promise<void>;
const taskQueue = uniqueId('cluster');
const log = (m: string) => process.stderr.write(`[cluster] ${m}\n`);

beforeAll(async () => {
  ctx = await createTestContext('cluster');
  const tools = await ensureServerTools(log);
  const cli = await findTemporalCli({ log });
  if (!tools || !cli) throw new Error('no Temporal server build (needs Go)');
  const pg = new URL(databaseUrl());
  cluster = await startTemporalCluster(tools, {
    pg: { host: pg.hostname, port: Number(pg.port), user: decodeURIComponent(pg.username), password: decodeURIComponent(pg.password) },
    database: `temporal_${randomBytes(3).toString('hex')}`,
    namespace: 'default',
    stateDir: fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-cluster-')),
    cli: cli.path,
    log,
  });
  // The client talks to the first frontend, the workers to the second.
  connection = await Connection.connect({ address: cluster.frontends[0]! });
  client = new Client({ connection, namespace: cluster.namespace });
  workerConnection = await NativeConnection.connect({ address: cluster.frontends[1]! });
  const worker = await createSagaWorker({ connection: workerConnection, namespace: cluster.namespace, taskQueue, deps: ctx.deps });
  stopWorker = ctx.startWorker(worker);
}, 300_000);

afterAll(async () => {
  await stopWorker?.();
  await workerConnection?.close();
  await connection?.close();
  await cluster?.stop();
  await ctx?.close();
});

const order = (sku: string, overrides: Partial<OrderInput> = {}): OrderInput =>
  orderInput({ orderId: uniqueId('cl'), customerId: 'cust-cluster', items: [{ sku, quantity: 1 }], amount: { amountMinor: 1_500, currency: 'EUR' }, ...overrides });

test('the order saga on the cluster: completed, compensated and cancelled paths leave balanced books', async () => {
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 10 });
  const ok = await startOrderSaga(client, order(sku), taskQueue);
  const declined = await startOrderSaga(client, order(sku, { paymentToken: 'tok_decline' }), taskQueue);
  const slow = order(sku);
  await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 1500, keyPrefix: `order-${slow.orderId}/` });
  const cancelled = await startOrderSaga(client, slow, taskQueue);
  for (let i = 0; i < 100 && (await cancelled.query(statusQuery)).currentStep !== 'charge-payment'; i++) await new Promise((r) => setTimeout(r, 50));
  await cancelled.executeUpdate(cancelUpdate, { args: [{ reason: 'changed my mind' }] });

  expect((await ok.result()).status).toBe('completed');
  expect((await declined.result()).status).toBe('compensated');
  expect((await cancelled.result()).status).toBe('cancelled');
  const report = await auditBooks(ctx.db, { settled: true });
  expect(report.violations).toEqual([]);
});

test('SIGKILL of a history, a matching and a frontend host mid-flight: every saga finishes once, the books reconcile', async () => {
  const sku = uniqueId('sku');
  const N = 30;
  await seedInventory(ctx.db, { [sku]: N });
  // Slow charges keep sagas in flight across the kills.
  const orders = Array.from({ length: N }, () => order(sku));
  for (const o of orders) await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 400, keyPrefix: `order-${o.orderId}/` });
  const started = Date.now();
  const handles = await Promise.all(orders.map((o) => startOrderSaga(client, o, taskQueue)));
  const finishedAt: number[] = [];
  const results = Promise.all(handles.map((h) => h.result().finally(() => finishedAt.push(Date.now() - started))));

  const recovery: Record<string, number> = {};
  for (const service of ['history', 'matching', 'frontend'] as const) {
    const host = cluster.hosts.find((h) => h.service === service && h.index === 0)!;
    const t0 = Date.now();
    log(`${Date.now() - started} ms: SIGKILL ${service}#0 (${finishedAt.length}/${N} sagas done)`);
    await cluster.kill(host);
    await new Promise((r) => setTimeout(r, 2000));
    await cluster.restart(host);
    recovery[service] = Date.now() - t0;
  }
  log(`kill → restart issued (ms): ${JSON.stringify(recovery)}`);
  const done = await results;
  log(`saga completions (ms after start): ${finishedAt.sort((a, b) => a - b).join(' ')}`);

  expect(done.map((r) => r.status)).toEqual(Array(N).fill('completed'));
  // Exactly once: one charge and one label per order, every ledger row settled, the books balanced.
  const ids = orders.map((o) => o.orderId);
  const { rows } = await ctx.db.query<{ charges: number; shipments: number; pending: number }>(
    `SELECT (SELECT count(*)::int FROM payments WHERE order_id = ANY($1) AND status = 'captured') AS charges,
            (SELECT count(*)::int FROM shipments WHERE order_id = ANY($1) AND status = 'created') AS shipments,
            (SELECT count(*)::int FROM step_ledger WHERE workflow_id = ANY($2) AND state = 'pending') AS pending`,
    [ids, ids.map((id) => `order-${id}`)],
  );
  expect(rows[0]).toEqual({ charges: N, shipments: N, pending: 0 });
  expect((await auditBooks(ctx.db, { settled: true })).violations).toEqual([]);
});

test('throughput: the same sagas on the cluster and on the dev server, in one run (figures printed, not asserted)', async () => {
  const sku = uniqueId('sku');
  const N = 40;
  await seedInventory(ctx.db, { [sku]: 2 * N });
  const devQueue = uniqueId('dev');
  const devWorker = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue: devQueue, deps: ctx.deps });
  const stopDev = ctx.startWorker(devWorker);
  try {
    const figures: Record<string, string> = {};
    for (const [name, c, queue] of [
      ['cluster', client, taskQueue],
      ['dev server', ctx.client, devQueue],
    ] as const) {
      const t0 = Date.now();
      const handles = await Promise.all(Array.from({ length: N }, () => startOrderSaga(c, order(sku), queue)));
      const results = await Promise.all(handles.map((h) => h.result()));
      expect(results.map((r) => r.status)).toEqual(Array(N).fill('completed'));
      figures[name] = `${(N / ((Date.now() - t0) / 1000)).toFixed(1)} sagas/s`;
    }
    log(`${N} sagas at once: ${JSON.stringify(figures)}`);
    expect((await auditBooks(ctx.db, { settled: true })).violations).toEqual([]);
  } finally {
    await stopDev();
  }
});
