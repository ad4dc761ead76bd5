/**
 * PostgreSQL taken away under the running intake process (`npm run intake`) with
 * order messages in flight: first restarted (a fast shutdown, as an operator or a
 * failover does it, and a start on the same data directory and port), then its
 * connections terminated over and over. The PostgreSQL is the test's own (an
 * embedded one in a process of its own, as the chaos stack runs it), so no other
 * test file feels the outage; so are the NATS server and the task queue.
 *
 * Messages published while PostgreSQL is down are taken, fail, and are handed back
 * with a delay (nak with backoff); the broker redelivers them, and once PostgreSQL
 * is back each becomes exactly one order and one saga. Nothing is dead-lettered
 * (the outage is far shorter than INTAKE_MAX_DELIVER deliveries of backoff), and the
 * intake never exits. Asserted on rows, on the streams and on Temporal, never on logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client as PgClient } from 'pg';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from '../../dev/nats';
import { migrate } from '../../src/db/migrate';
import { createPool, type Db } from '../../src/db/pool';
import { orderIntakeTopology } from '../../src/orders/intake';
import { freePort } from '../../src/ports';
import { createSagaWorker } from '../../workers/worker';
import { createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';
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
  until,
} from '../helpers/stream-faults';

const ROOT = path.resolve(__dirname, '../..');
const topology = orderIntakeTopology();
/** Deliveries before a message that keeps failing is dead-lettered: 1 + 2 + ... + 60 s of backoff, about two minutes. */
const MAX_DELIVER = 8;
/** The observer's connections (this test's reads) are spared when every other one is terminated. */
const OBSERVER = 'intake-faults-observer';
const taskQueue = uniqueId('pg-restart');
const tag = uniqueId('pr');
const sku = uniqueId('sku');

let ctx: TestContext;
let pgDir: string;
let pgPort: number;
let postgres: { child: ChildProcess; url: string } | undefined;
let db: Db;
let nats: NatsServer;
let nc: NatsConnection;
const children: ChildProcess[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
const outputs = new Map<string, () => string>();

/** The embedded PostgreSQL as a process of its own (dev/chaos/postgres-process.ts); resolves with its URL once it is ready. */
async function startPostgres(): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'dev/chaos/postgres-process.ts', pgDir, String(pgPort)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-4000)));
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout!.on('data', (b: Buffer) => {
      stdout += b.toString();
      const m = /"msg":"postgres ready","url":"([^"]+)"/.exec(stdout);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the test's PostgreSQL exited ${code} before it was ready:\n${out}`)));
  });
  return { child, url };
}

/** A fast shutdown (the wrapper's SIGTERM): sessions are terminated, the server stops; resolves once it has. */
async function stopPostgres(): Promise<void> {
  if (!postgres) return;
  const { child } = postgres;
  postgres = undefined;
  await stopProcess(child, 'SIGTERM');
}

beforeAll(async () => {
  ctx = await createTestContext('pg_restart');
  pgDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-intake-pg-'));
  // As root the server runs as the postgres user, which must reach its data directory.
  fs.chmodSync(pgDir, 0o755);
  pgDir = path.join(pgDir, 'data');
  pgPort = await freePort();
  postgres = await startPostgres();
  await migrate(postgres.url);
  const observer = new URL(postgres.url);
  observer.searchParams.set('application_name', OBSERVER);
  db = createPool({ connectionString: observer.toString(), max: 2 });
  await seedInventory(db, { [sku]: 1_000 });
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url, maxReconnectAttempts: -1 });
}, 240_000);

afterAll(async () => {
  await Promise.all(children.map((c) => stopProcess(c, 'SIGKILL')));
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
  await nc?.close();
  await nats?.stop();
  if (nats) fs.rmSync(nats.storeDir, { recursive: true, force: true });
  await db?.end();
  await stopPostgres();
  if (pgDir) fs.rmSync(path.dirname(pgDir), { recursive: true, force: true });
  await ctx?.close();
}, 120_000);

const inboxCount = async (ids: string[]) =>
  (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox_messages WHERE source = $1 AND message_id = ANY($2)', [topology.stream, ids])).rows[0]!.n;

/** Deliveries beyond each message's first (naks and expired ack waits redelivered), from the consumer's own counters. */
async function redeliveries(): Promise<{ lastDelivered: number; extra: number }> {
  const info = await (await jetstreamManager(nc)).consumers.info(topology.stream, topology.consumer);
  return { lastDelivered: info.delivered.stream_seq, extra: info.delivered.consumer_seq - info.delivered.stream_seq };
}

/** Terminates every session of the orders' database but this test's own; returns how many. */
async function terminateAll(admin: PgClient): Promise<number> {
  const res = await admin.query<{ n: number }>(
    `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE datname = 'sagaflow' AND pid <> pg_backend_pid() AND backend_type = 'client backend'
        AND application_name IS DISTINCT FROM $1`,
    [OBSERVER],
  );
  return res.rows[0]!.n;
}

test('PostgreSQL restarted, then its connections terminated over and over, under the intake: messages are redelivered with backoff and each makes one order and one saga; nothing dead-lettered, the intake lives', async () => {
  await explainedByOutput(outputs, async () => {
    const { child: intake, out } = await startEntry(
      'bin/intake.ts',
      {
        ...process.env,
        DATABASE_URL: postgres!.url,
        NATS_URL: nats.url,
        TEMPORAL_TASK_QUEUE: taskQueue,
        SAGAFLOW_SEARCH_ATTRIBUTES: 'false',
        INTAKE_MAX_DELIVER: String(MAX_DELIVER),
        LOG_LEVEL: 'info',
      },
      'intake consuming',
    );
    children.push(intake);
    outputs.set('intake', out);
    const publish = retryingPublisher(nc, topology.subjects[0]!);
    const published: string[] = [];
    const send = async (label: string, n: number): Promise<string[]> => {
      const ids = Array.from({ length: n }, (_, i) => `${tag}-${label}-${String(i).padStart(3, '0')}`);
      published.push(...ids);
      await Promise.all(ids.map((id) => publish(id, orderMessageBody(`customer-${id}`, sku))));
      return ids;
    };
    const jsm = await jetstreamManager(nc);

    // 1. A restart with messages in hand: down as soon as the first of a batch has become an order.
    const before = await send('before', 20);
    await until(() => inboxCount(before), (n) => n >= 1, 'the first order of the first batch', 6000, 10);
    await stopPostgres();
    const during = await send('during-restart', 20);
    const lastSeq = (await jsm.streams.info(topology.stream)).state.last_seq;
    const extraBefore = (await redeliveries()).extra;
    // While it is down the intake takes every message, fails, and hands it back with a delay; the broker
    // redelivers it (a delivery beyond its first) well before its ack wait would have.
    await until(
      redeliveries,
      (r) => r.lastDelivered >= lastSeq && r.extra - extraBefore >= during.length,
      'the messages published during the outage delivered and redelivered',
      1200,
    );
    postgres = await startPostgres();
    await send('after-restart', 20);

    // Once it is back, every message of the restart becomes its order: those in hand, those handed back.
    await until(() => inboxCount(published), (n) => n === published.length, 'the orders of the messages sent around the restart', 2400);

    // 2. Every session but the test's own terminated, again and again, while messages keep coming: a
    // failover's or an operator's repeated kills, each leaving a moment in which work can go on. The
    // window closes once the intake has had to hand messages back (or after 100 messages), so no message
    // spends more than a few of its deliveries in it.
    const admin = new PgClient({ connectionString: postgres.url, application_name: OBSERVER });
    admin.on('error', () => undefined);
    await admin.connect();
    cleanups.push(() => admin.end());
    let terminating = true;
    let terminations = 0;
    let rounds = 0;
    const terminator = (async () => {
      while (terminating) {
        terminations += await terminateAll(admin);
        rounds++;
        await new Promise((r) => setTimeout(r, 250 + Math.random() * 500));
      }
    })();
    const extraAtStart = (await redeliveries()).extra;
    const underTerminations: string[] = [];
    try {
      for (let i = 0; underTerminations.length < 100; i++) {
        underTerminations.push(...(await send(`terminated-${String(i).padStart(2, '0')}`, 2)));
        if (rounds >= 10 && (await redeliveries()).extra > extraAtStart) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    } finally {
      terminating = false;
      await terminator;
    }
    expect(terminations).toBeGreaterThan(0);

    // Every message made its order; the consumer ends with nothing pending and nothing unacknowledged.
    await until(() => inboxCount(published), (n) => n === published.length, `${published.length} inbox records`, 2400);
    await consumerSettled(nc, topology.stream, topology.consumer);

    // Exactly one order per message, for the customer it named, with its saga started.
    const rows = await inboxOrders(db, topology.stream);
    expect(rows.map((r) => r.message_id).sort()).toEqual([...published].sort());
    for (const r of rows) expect(r).toMatchObject({ customer_id: `customer-${r.message_id}`, workflow_id: `order-${r.order_id}`, saga_started: true });
    const orders = await db.query<{ id: string }>('SELECT id FROM orders');
    expect(orders.rows.map((o) => o.id).sort()).toEqual(rows.map((r) => r.order_id!).sort());
    expect(await streamCount(nc, topology.deadLetterStream)).toBe(0);
    expect(alive(intake)).toBe(true);

    // A worker, now the faults are over, runs every saga to its end: one per order, by its workflow ID.
    const workerDb = createPool({ connectionString: postgres.url, max: 4 });
    cleanups.push(() => workerDb.end());
    const stopWorker = ctx.startWorker(
      await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: { ...ctx.deps, db: workerDb } }),
    );
    cleanups.push(stopWorker);
    await until(
      async () => (await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM orders WHERE status <> 'completed'`)).rows[0]!.n,
      (n) => n === 0,
      'every order completed',
      2400,
    );
    const expectedSagas = sagaIdsOf(orders.rows.map((o) => o.id));
    const sagas = await until(
      () => sagasOnQueue(ctx.client, taskQueue),
      (s) => s.length === expectedSagas.length && s.every((w) => w.status === 'COMPLETED'),
      `${expectedSagas.length} completed sagas listed`,
      600,
      250,
    );
    expect(sagas.map((s) => s.workflowId)).toEqual(expectedSagas);

    expect(alive(intake)).toBe(true);
    expect(await stopProcess(intake)).toBe(0);
  });
}, 600_000);
