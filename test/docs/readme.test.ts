/**
 * The README's HTTP examples, run verbatim with bash against a live stack:
 * a database of its own (seeded with the dev stack's catalogue, as `npm run
 * stack` does), the real Temporal server, a worker, the API on a real port, the
 * provider and carrier, and the stream intake on the real NATS server. What
 * they do is asserted in the rows they leave.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { startApi, type RunningApi } from '../../src/api/server';
import { migrate } from '../../src/db/migrate';
import { createPool, type Db } from '../../src/db/pool';
import { DEV_CATALOGUE, seedCatalogue } from '../../dev/catalogue';
import { startCarrier } from '../../dev/services/carrier';
import { startPaymentProvider } from '../../dev/services/payment-provider';
import type { RunningService } from '../../dev/services/http';
import { createSagaWorker } from '../../workers/worker';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ensureInboxTopology, runJetStreamInbox, type RunningInbox } from '../../packages/toolkit/src/inbox/jetstream';
import { orderIntakeHandler, orderIntakeTopology } from '../../src/orders/intake';
import { createTestContext, createTestDatabase, uniqueId, type TestContext } from '../helpers/context';

const ROOT = path.resolve(__dirname, '../..');

/** The first ```sh block after the heading. */
function shellBlockAfter(markdown: string, heading: string): string {
  const at = markdown.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README has no "${heading}"`);
  const block = /```sh\n([\s\S]*?)```/.exec(markdown.slice(at));
  if (!block?.[1]) throw new Error(`no sh block after "${heading}"`);
  return block[1];
}

/** Runs the README's block after `heading` with bash, strict, as a reader pastes it. */
function runBlock(heading: string, env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = shellBlockAfter(readFileSync(path.join(ROOT, 'README.md'), 'utf8'), heading);
  return new Promise((resolve) => {
    execFile('bash', ['-euo', 'pipefail', '-c', script], { cwd: ROOT, env, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

let ctx: TestContext;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let url: string;
let db: Db;
let services: RunningService[] = [];
let api: RunningApi;
let stopWorker: () => Promise<void>;
let nc: NatsConnection;
let intake: RunningInbox;

beforeAll(async () => {
  ctx = await createTestContext('readme');
  database = await createTestDatabase('readme');
  url = database.url;
  await migrate(url);
  db = createPool({ connectionString: url });
  await seedCatalogue(db);
  services = [await startPaymentProvider({ db }), await startCarrier({ db })];
  const taskQueue = uniqueId('readme');
  const worker = await createSagaWorker({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue,
    deps: { db, paymentProviderUrl: services[0]!.url, carrierUrl: services[1]!.url, providerTimeoutMs: 3000 },
  });
  stopWorker = ctx.startWorker(worker);
  api = await startApi({
    db,
    temporal: ctx.client,
    taskQueue,
    log: () => undefined,
    recoveryIntervalMs: 0,
    webhooks: { sealingKey: randomBytes(32), allowPrivate: true },
  });
  // The intake as `npm run intake` runs it: the default stream, consumer and dead letters.
  nc = await connect({ servers: process.env.NATS_URL!.split(',') });
  const topology = orderIntakeTopology();
  await ensureInboxTopology(nc, topology);
  intake = await runJetStreamInbox({
    nc,
    db,
    topology,
    retentionMs: 86_400_000,
    handler: orderIntakeHandler({ db, temporal: ctx.client, taskQueue, source: topology.stream }),
  });
}, 60_000);

afterAll(async () => {
  await intake?.stop();
  await nc?.close();
  await api?.close();
  await stopWorker?.();
  for (const s of services) await s.close();
  await db?.end();
  await ctx?.close();
  await database?.drop();
});

test("the README's HTTP examples run verbatim: the first order completes, its stock leaves the shelf, the cancel is refused", async () => {
  const { code, stdout, stderr } = await runBlock('## HTTP API', { ...process.env, DATABASE_URL: url, API: api.url });
  if (code !== 0) throw new Error(`the README's examples exited ${code}\n${stderr}\n${stdout}`);

  const orders = await db.query<{ id: string; status: string; failure_reason: string | null; client: string }>(
    `SELECT o.id, o.status, o.failure_reason, c.name AS client FROM orders o JOIN api_clients c ON c.id = o.client_id`,
  );
  expect(orders.rows).toEqual([{ id: expect.stringMatching(/^ord_/), status: 'completed', failure_reason: null, client: 'shop' }]);
  const order = orders.rows[0]!.id;
  // Every response the block printed, in order: the order view, the cancel refused (it has shipped), health, the stock list.
  expect(stdout).toContain(`"id":"${order}"`);
  expect(stdout).toMatch(/^HTTP\/1\.1 409 /m);
  expect(stdout).toMatch(/^\{"status":"ready"/m);
  expect(stdout).toMatch(new RegExp(`^widget\\t${DEV_CATALOGUE.widget! - 2}\\t0\\t${DEV_CATALOGUE.widget! - 2}$`, 'm'));
  const { rows: stock } = await db.query('SELECT on_hand, reserved FROM inventory WHERE sku = $1', ['widget']);
  expect(stock).toEqual([{ on_hand: DEV_CATALOGUE.widget! - 2, reserved: 0 }]);
  const { rows: charges } = await db.query(`SELECT status FROM payments WHERE order_id = $1`, [order]);
  expect(charges).toEqual([{ status: 'captured' }]);
}, 180_000);

test("the README's stream example runs verbatim: the published order completes once, no dead letter", async () => {
  const runIt = () => runBlock('### Orders from a stream', { ...process.env, DATABASE_URL: url });
  const { code, stdout, stderr } = await runIt();
  if (code !== 0) throw new Error(`the README's stream example exited ${code}\n${stderr}\n${stdout}`);
  expect(stdout).toMatch(/stream: 'SAGAFLOW_ORDERS'/);
  const done = async () => (await db.query<{ status: string }>(`SELECT status FROM orders WHERE customer_id = 'cust-2'`)).rows;
  for (let i = 0; i < 400 && (await done())[0]?.status !== 'completed'; i++) await new Promise((r) => setTimeout(r, 50));
  expect(await done()).toEqual([{ status: 'completed' }]);
  const { rows: inbox } = await db.query('SELECT message_id FROM inbox_messages');
  expect(inbox).toEqual([{ message_id: 'checkout-42' }]);
  // The dead-letter listing printed nothing: the example's only output is the publish acknowledgement.
  expect(stdout.trim().split('\n').filter((l) => /^\d+\t/.test(l))).toEqual([]);

  // Followed again (a producer's retry of the same message): still one order.
  const again = await runIt();
  expect(again.code).toBe(0);
  for (let i = 0; i < 40; i++) await new Promise((r) => setTimeout(r, 50));
  expect(await done()).toEqual([{ status: 'completed' }]);
}, 180_000);

test("the README's webhook example runs verbatim: an endpoint registered, listed without its secret, deleted", async () => {
  const { code, stdout, stderr } = await runBlock('### Webhooks', { ...process.env, DATABASE_URL: url, API: api.url });
  if (code !== 0) throw new Error(`the README's webhook example exited ${code}\n${stderr}\n${stdout}`);
  const lines = stdout.trim().split('\n');
  const created = JSON.parse(lines[0]!) as { id: string; secret: string };
  expect(created.secret).toMatch(/^whsec_/);
  expect(JSON.parse(lines[1]!)).toEqual({ endpoints: [expect.objectContaining({ id: created.id, status: 'enabled' })] });
  expect(lines[1]).not.toContain(created.secret);
  expect(JSON.parse(lines[2]!)).toEqual({ deliveries: [] });
  expect(lines[3]).toBe('204');
  const { rows } = await db.query('SELECT deleted_at IS NOT NULL AS deleted FROM webhook_endpoints WHERE id = $1', [created.id]);
  expect(rows).toEqual([{ deleted: true }]);
}, 180_000);
