/**
 * The single NATS server restarted under the running intake and relay processes
 * (`npm run intake`, `npm run relay`), with order messages in flight: once killed
 * outright (SIGKILL) and once stopped cleanly (SIGTERM), each time started again on
 * the same port and JetStream store. Neither process exits; each reconnects and goes
 * on. Every message published, before, during and after the outages, becomes exactly
 * one order with one saga that completes; nothing is dead-lettered; every order event
 * is published, once per event ID. Asserted on rows, on the streams and on Temporal,
 * never on logs.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from '../../dev/nats';
import { migrate } from '../../src/db/migrate';
import { createPool, type Db } from '../../src/db/pool';
import { orderIntakeTopology } from '../../src/orders/intake';
import { ORDER_EVENTS } from '../../src/orders/relay';
import { createSagaWorker } from '../../workers/worker';
import { createTestContext, createTestDatabase, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { startEntry } from '../helpers/processes';
import {
  alive,
  consumerSettled,
  explainedByOutput,
  inboxOrders,
  orderMessageBody,
  retryingPublisher,
  sagaIdsOf,
  sagasOnQueue,
  stopProcess,
  streamCount,
  streamMessageIds,
  until,
} from '../helpers/stream-faults';

const topology = orderIntakeTopology();
const taskQueue = uniqueId('nats-restart');
const tag = uniqueId('nr');
const sku = uniqueId('sku');
let ctx: TestContext;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db;
let storeDir: string;
let nats: NatsServer;
/** The test's own connection: the producer, and the reader of the streams. */
let nc: NatsConnection;
let stopWorker: (() => Promise<void>) | undefined;
const children: ChildProcess[] = [];
const outputs = new Map<string, () => string>();

beforeAll(async () => {
  ctx = await createTestContext('nats_restart');
  storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-nats-restart-'));
  nats = await startNatsServer({ storeDir });
  nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  // The processes migrate `public` themselves: the database is the test's own.
  database = await createTestDatabase('nats_restart');
  await migrate(database.url);
  db = createPool({ connectionString: database.url, max: 4 });
  await seedInventory(db, { [sku]: 1_000 });
  // The saga worker, on the orders' database; the provider and carrier are the test context's.
  stopWorker = ctx.startWorker(
    await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: { ...ctx.deps, db } }),
  );
}, 180_000);

afterAll(async () => {
  await Promise.all(children.map((c) => stopProcess(c, 'SIGKILL')));
  await stopWorker?.();
  await nc?.close();
  await nats?.stop('SIGKILL');
  if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
  await db?.end();
  await database?.drop();
  await ctx?.close();
});

const env = () => ({
  ...process.env,
  DATABASE_URL: database.url,
  NATS_URL: nats.url,
  TEMPORAL_TASK_QUEUE: taskQueue,
  SAGAFLOW_SEARCH_ATTRIBUTES: 'false',
  LOG_LEVEL: 'info',
});

async function start(entry: string, ready: string): Promise<ChildProcess> {
  const { child, out } = await startEntry(entry, env(), ready);
  children.push(child);
  outputs.set(entry, out);
  return child;
}

const inboxCount = async (ids: string[]) =>
  (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox_messages WHERE source = $1 AND message_id = ANY($2)', [topology.stream, ids])).rows[0]!.n;

test('NATS killed and stopped under the intake and the relay: both reconnect; one order and one completed saga per message, nothing dead-lettered, every event published once', async () => {
  await explainedByOutput(outputs, async () => {
    const intake = await start('bin/intake.ts', 'intake consuming');
    const relay = await start('bin/relay.ts', 'relay publishing');
    const publish = retryingPublisher(nc, topology.subjects[0]!);
    const published: string[] = [];
    const send = (ids: string[]) => Promise.all(ids.map((id) => publish(id, orderMessageBody(`customer-${id}`, sku))));
    const batch = (label: string, n: number) => Array.from({ length: n }, (_, i) => `${tag}-${label}-${String(i).padStart(3, '0')}`);

    /** A batch on its way in; the server goes down as soon as the intake has made the first of them an order. */
    async function restartUnderLoad(label: string, signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
      const ids = batch(label, 40);
      published.push(...ids);
      const sending = send(ids);
      await until(() => inboxCount(ids), (n) => n >= 1, `the first order of batch ${label}`, 6000, 10);
      const port = nats.port;
      await nats.stop(signal);
      // Down for a while: the clients' reconnect attempts fail before one succeeds.
      await new Promise((r) => setTimeout(r, 2000));
      nats = await startNatsServer({ port, storeDir });
      // The producer's retries reach the restarted server; then more messages after it is back.
      await sending;
      const after = batch(`${label}-after`, 20);
      published.push(...after);
      await send(after);
    }

    await restartUnderLoad('kill', 'SIGKILL');
    await restartUnderLoad('term', 'SIGTERM');

    // Every message published made its order (the ones in hand at the outage are redelivered after their ack wait).
    await until(() => inboxCount(published), (n) => n === published.length, `${published.length} inbox records`, 2400);
    await consumerSettled(nc, topology.stream, topology.consumer);
    await until(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM orders WHERE status <> 'completed'`)).rows[0]!.n,
      (n) => n === 0,
      'every order completed',
      2400,
    );

    // Exactly one order per message, one inbox record each, for the customer the message named.
    const rows = await inboxOrders(db, topology.stream);
    expect(rows.map((r) => r.message_id).sort()).toEqual([...published].sort());
    for (const r of rows) {
      expect(r).toMatchObject({ customer_id: `customer-${r.message_id}`, workflow_id: `order-${r.order_id}`, saga_started: true, status: 'completed' });
    }
    const orders = await db.query<{ id: string }>('SELECT id FROM orders');
    expect(orders.rows.map((o) => o.id).sort()).toEqual(rows.map((r) => r.order_id!).sort());

    // One saga per order by its workflow ID, each completed, and no other on the queue.
    const expectedSagas = sagaIdsOf(orders.rows.map((o) => o.id));
    const sagas = await until(
      () => sagasOnQueue(ctx.client, taskQueue),
      (s) => s.length === expectedSagas.length && s.every((w) => w.status === 'COMPLETED'),
      `${expectedSagas.length} completed sagas listed`,
      600,
      250,
    );
    expect(sagas.map((s) => s.workflowId)).toEqual(expectedSagas);

    // Nothing dead-lettered; both processes rode out both outages.
    expect(await streamCount(nc, topology.deadLetterStream)).toBe(0);
    expect(alive(intake)).toBe(true);
    expect(alive(relay)).toBe(true);

    // The relay: every order event marked published, and in the event stream once per event ID.
    await until(
      async () => (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM order_events WHERE published_at IS NULL')).rows[0]!.n,
      (n) => n === 0,
      'every order event published',
      1200,
    );
    const events = await db.query<{ event_id: string }>('SELECT event_id::text FROM order_events ORDER BY event_id');
    // created and completed, for every order.
    expect(events.rows.length).toBe(2 * published.length);
    const inStream = await streamMessageIds(nc, ORDER_EVENTS.stream);
    const streamIds = inStream.map((m) => m.msgId ?? `(no id at ${m.seq})`).sort();
    expect(streamIds).toEqual(events.rows.map((e) => e.event_id).sort());

    // Both still stop cleanly.
    expect(await stopProcess(intake)).toBe(0);
    expect(await stopProcess(relay)).toBe(0);
  });
}, 600_000);
