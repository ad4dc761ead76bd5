/**
 * sagaflow on a self-hosted Temporal cluster on PostgreSQL (dev/temporal-cluster.ts):
 * 2 frontend, 2 history, 2 matching and 1 worker host as separate processes. The
 * order saga's paths run on it and replay from its histories; then, with sagas in
 * flight, one history host, one matching host and one frontend are SIGKILLed and
 * restarted in turn, and every saga must finish exactly once with the books
 * reconciled. Clients and workers dial the cluster's balanced address.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { Client, Connection, ServiceError, WithStartWorkflowOperation } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { auditBooks } from '../src/orders/audit';
import { reconcileSimulatedServices } from '../dev/services/reconcile';
import { orderSagaStart, startOrderSaga } from '../src/orders/start';
import { findTemporalCli } from '../dev/temporal';
import { ensureServerTools, startTemporalCluster, type TemporalCluster } from '../dev/temporal-cluster';
import { ensureUiServer, startTemporalUi } from '../dev/temporal-ui';
import { replayFromServer } from '../packages/toolkit/src/replay/live';
import { waitFor } from '../src/ports';
import { createSagaWorker, orderSagaReplayOptions } from '../workers/worker';
import { cancelUpdate, type orderSaga } from '../workflows/order-saga';
import type { OrderSagaWorkflow } from '../workflows/order/definitions';
import { orderWorkflowId } from '../workflows/order/ids';
import type { OrderInput } from '../workflows/order/types';
import { addFault, createTestContext, databaseUrl, orderInput, seedInventory, uniqueId, type TestContext } from '../test/helpers/context';
import { clientConnectionOptions } from '../src/temporal-connect';

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
    // This file's test context, worker and the processes its fault run starts.
    otherConnections: [{ who: 'the cluster suite', processes: 1, each: 80 }],
    log,
  });
  // Client and worker dial the cluster's balanced address, as they would a load balancer in production.
  connection = await Connection.connect(clientConnectionOptions({ address: cluster.address }));
  client = new Client({ connection, namespace: cluster.namespace, dataConverter: ctx.dataConverter });
  workerConnection = await NativeConnection.connect(clientConnectionOptions({ address: cluster.address }));
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
  // The cancel sent with the start, as the API sends one for an order whose saga never started: the
  // saga has it before its first step (an orderSagaV2 runs its steps in one task and would see a
  // cancel sent later only when that task ends). Its charge is abandoned and its steps undone.
  const start = orderSagaStart(order(sku), taskQueue);
  const operation = new WithStartWorkflowOperation<OrderSagaWorkflow>(start.workflowType, start.options);
  await client.workflow.executeUpdateWithStart(cancelUpdate, { args: [{ reason: 'changed my mind' }], startWorkflowOperation: operation });
  const cancelled = await operation.workflowHandle();

  expect((await ok.result()).status).toBe('completed');
  expect((await declined.result()).status).toBe('compensated');
  expect((await cancelled.result()).status).toBe('cancelled');
  const report = await auditBooks(ctx.db, { settled: true, checks: [reconcileSimulatedServices] });
  expect(report.violations).toEqual([]);
});

test('recent histories from the live cluster replay against the current build, and fail against a changed one', async () => {
  // The paths test's three sagas, once the cluster's SQL visibility store lists them closed.
  const query = `TaskQueue = '${taskQueue}' AND ExecutionStatus != 'Running'`;
  await waitFor('three closed sagas in visibility', 30_000, async () => {
    const { count } = await client.workflow.count(query);
    if (count < 3) throw new Error(`${count} listed`);
  });
  const outcomes = await replayFromServer(client, query, orderSagaReplayOptions());
  expect(outcomes).toHaveLength(3);
  expect(outcomes.filter((o) => !(o.ok && o.endingMatches === true))).toEqual([]);

  const changed = await replayFromServer(client, query, { ...orderSagaReplayOptions(), workflowsPath: require.resolve('../test/replay/fixtures/changed-workflows') });
  expect(changed.find((o) => !o.ok)?.errorName).toBe('DeterminismViolationError');
});

test('the Web UI, pointed at the cluster, lists its sagas', async () => {
  const server = await ensureUiServer(log);
  if (!server) throw new Error('no Temporal Web UI build (needs Go)');
  const ui = await startTemporalUi({ server, temporalAddress: cluster.address, namespace: cluster.namespace, stateDir: fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-ui-')), log });
  try {
    const query = encodeURIComponent(`TaskQueue = '${taskQueue}'`);
    const res = await fetch(`${ui.url}/api/v1/namespaces/${cluster.namespace}/workflows?query=${query}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { executions?: { execution: { workflowId: string } }[] };
    expect(body.executions?.length).toBeGreaterThanOrEqual(3);
    expect(body.executions!.every((e) => e.execution.workflowId.startsWith('order-cl-'))).toBe(true);
    // The UI's pages themselves are served too.
    const page = await fetch(`${ui.url}/namespaces/${cluster.namespace}/workflows`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
  } finally {
    await ui.stop();
  }
});

/**
 * What a careful client does while a host is lost: a start or a wait that fails in
 * transport (a deadline passed while the run's shard had no owner yet, a connection
 * reset) is tried again. The same order means the same workflow ID, so a start that
 * did reach the server is attached to, never made twice.
 */
async function untilAnswered<T>(call: () => Promise<T>, onRetry?: () => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ServiceError) || attempt >= 20) throw err;
      onRetry?.();
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
const startSaga = (o: OrderInput, onRetry?: () => void) => untilAnswered(() => startOrderSaga(client, o, taskQueue), onRetry);
const sagaResult = (o: OrderInput, onRetry?: () => void) =>
  untilAnswered(() => client.workflow.getHandle<typeof orderSaga>(orderWorkflowId(o.orderId)).result(), onRetry);

/**
 * Sagas started every `everyMs` until stopped, each start retried with the same order
 * until the cluster takes it (a retried start never makes a second saga).
 */
function steadyLoad(sku: string, everyMs: number) {
  const started: { order: OrderInput; at: number; finished?: Promise<number> }[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const o = order(sku);
      const at = Date.now();
      await startSaga(o);
      started.push({ order: o, at, finished: sagaResult(o).then(() => Date.now()) });
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    started,
    async stop() {
      running = false;
      await loop;
    },
  };
}

/** Every probe's order, so the fault run's checks cover them too. */
const probed: OrderInput[] = [];

/**
 * Starts `n` quick sagas. `ms`: until the client has seen the last of them finish.
 * `closedMs`: until the last closed on the server (a result can be seen late: see the
 * stream's figures). `retries`: starts and result waits tried again after a transport error.
 */
async function probe(sku: string, n: number): Promise<{ ms: number; closedMs: number; retries: number }> {
  const t0 = Date.now();
  let retries = 0;
  const again = () => void retries++;
  const orders = Array.from({ length: n }, () => order(sku));
  probed.push(...orders);
  await Promise.all(orders.map((o) => startSaga(o, again)));
  const results = await Promise.all(orders.map((o) => sagaResult(o, again)));
  const ms = Date.now() - t0;
  expect(results.map((r) => r.status)).toEqual(Array(n).fill('completed'));
  const closes = await Promise.all(
    orders.map(async (o) => (await untilAnswered(() => client.workflow.getHandle(orderWorkflowId(o.orderId)).describe())).closeTime!.getTime()),
  );
  return { ms, closedMs: Math.max(...closes) - t0, retries };
}

test('SIGKILL of a history, a matching and a frontend host, then SIGTERM of the other history host, under load: every saga finishes once, the books reconcile', async () => {
  const sku = uniqueId('sku');
  const BATCH = 30;
  const PROBES = 8;
  await seedInventory(ctx.db, { [sku]: 1_000 });
  // A steady stream keeps sagas in flight through every kill; a batch with slow charges is in flight at the first.
  const load = steadyLoad(sku, 150);
  const baseline = await probe(sku, PROBES);
  log(`8 probes with every host up, under the stream: ${JSON.stringify(baseline)}`);
  const batch = Array.from({ length: BATCH }, () => order(sku));
  for (const o of batch) await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 400, keyPrefix: `order-${o.orderId}/` });
  await Promise.all(batch.map((o) => startSaga(o)));
  const batchDone = Promise.all(batch.map((o) => sagaResult(o)));

  // Per kill: how long until sagas started right after it have all finished through the
  // surviving hosts (8 of them, so that some land on the lost host's shards or queues),
  // how long the restarted host takes to rejoin, and the same probe once it has. Last, a
  // history host taken down with SIGTERM, as in a rolling upgrade, for comparison.
  const figures: Record<string, Record<string, number>> = {};
  for (const [service, index, signal] of [
    ['history', 0, 'SIGKILL'],
    ['matching', 0, 'SIGKILL'],
    ['frontend', 0, 'SIGKILL'],
    ['history', 1, 'SIGTERM'],
  ] as const) {
    const host = cluster.hosts.find((h) => h.service === service && h.index === index)!;
    const name = `${service}#${index} ${signal}`;
    log(`${name} (${load.started.length} sagas started so far)`);
    // The probes start with the signal: a host stopped with SIGTERM may still serve while it drains.
    const t0 = Date.now();
    const [exitedMs, lost] = await Promise.all([
      (signal === 'SIGKILL' ? cluster.kill(host) : cluster.terminate(host)).then(() => Date.now() - t0),
      probe(sku, PROBES),
    ]);
    const restartedAt = Date.now();
    await cluster.restart(host);
    await cluster.joined(host, restartedAt);
    const rejoinedMs = Date.now() - restartedAt;
    const back = await probe(sku, PROBES);
    figures[name] = {
      exitedMs,
      probesDoneMs: lost.ms,
      probesClosedMs: lost.closedMs,
      probeRetries: lost.retries,
      rejoinedMs,
      probesAfterRejoinMs: back.ms,
      afterRejoinClosedMs: back.closedMs,
      afterRejoinRetries: back.retries,
    };
    log(`${name}: ${JSON.stringify(figures[name])}`);
  }
  await load.stop();
  const streamed = load.started;
  const done = [...(await batchDone), ...(await Promise.all(streamed.map((s) => sagaResult(s.order))))];
  const latencies = (await Promise.all(streamed.map(async (s) => (await s.finished!) - s.at))).sort((x, y) => x - y);
  log(`recovery per host lost (ms): ${JSON.stringify(figures)}`);
  // The same as the server recorded it (start to close), to tell a stalled saga from a client that saw its result late.
  const runs = await Promise.all(
    streamed.map(async (s) => {
      const d = await client.workflow.getHandle(orderWorkflowId(s.order.orderId)).describe();
      return { ms: d.closeTime!.getTime() - d.startTime.getTime(), seenLateMs: (await s.finished!) - d.closeTime!.getTime() };
    }),
  );
  const p50max = (xs: number[]) => {
    const sorted = [...xs].sort((x, y) => x - y);
    return `p50 ${sorted[sorted.length >> 1]}, max ${sorted[sorted.length - 1]}`;
  };
  log(
    `${streamed.length} streamed sagas (ms): started to result seen by the client ${p50max(latencies)}; ` +
      `run start to close on the server ${p50max(runs.map((r) => r.ms))}; result seen after the close ${p50max(runs.map((r) => r.seenLateMs))}`,
  );

  expect(done.map((r) => r.status)).toEqual(Array(BATCH + streamed.length).fill('completed'));
  // Exactly once: one charge and one label per order, every ledger row settled, the books balanced.
  const ids = [...batch, ...streamed.map((s) => s.order), ...probed].map((o) => o.orderId);
  const { rows } = await ctx.db.query<{ orders: number; charges: number; shipments: number; pending: number }>(
    `SELECT (SELECT count(*)::int FROM orders WHERE id = ANY($1)) AS orders,
            (SELECT count(*)::int FROM payments WHERE order_id = ANY($1) AND status = 'captured') AS charges,
            (SELECT count(*)::int FROM shipments WHERE order_id = ANY($1) AND status = 'created') AS shipments,
            (SELECT count(*)::int FROM step_ledger WHERE workflow_id = ANY($2) AND state = 'pending') AS pending`,
    [ids, ids.map((id) => orderWorkflowId(id))],
  );
  expect(rows[0]).toEqual({ orders: ids.length, charges: ids.length, shipments: ids.length, pending: 0 });
  expect((await auditBooks(ctx.db, { settled: true, checks: [reconcileSimulatedServices] })).violations).toEqual([]);
  // No saga left open on the cluster (its visibility store catches up within moments).
  await waitFor('no running sagas in visibility', 30_000, async () => {
    const { count } = await client.workflow.count(`TaskQueue = '${taskQueue}' AND ExecutionStatus = 'Running'`);
    if (count !== 0) throw new Error(`${count} still running`);
  });
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
    expect((await auditBooks(ctx.db, { settled: true, checks: [reconcileSimulatedServices] })).violations).toEqual([]);
  } finally {
    await stopDev();
  }
});
