/**
 * The README's HTTP examples, run verbatim with bash against a live stack:
 * a database of its own (seeded with the dev stack's catalogue, as `npm run
 * stack` does), the real Temporal server, a worker, the API on a real port, the
 * provider and carrier. What they do is asserted in the rows they leave.
 */
import { execFile } from 'node:child_process';
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

let ctx: TestContext;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let url: string;
let db: Db;
let services: RunningService[] = [];
let api: RunningApi;
let stopWorker: () => Promise<void>;

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
  api = await startApi({ db, temporal: ctx.client, taskQueue, log: () => undefined, recoveryIntervalMs: 0 });
}, 60_000);

afterAll(async () => {
  await api?.close();
  await stopWorker?.();
  for (const s of services) await s.close();
  await db?.end();
  await ctx?.close();
  await database?.drop();
});

test("the README's HTTP examples run verbatim: the first order completes, its stock leaves the shelf, the cancel is refused", async () => {
  const script = shellBlockAfter(readFileSync(path.join(ROOT, 'README.md'), 'utf8'), '## HTTP API');
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'bash',
      ['-euo', 'pipefail', '-c', script],
      { cwd: ROOT, env: { ...process.env, DATABASE_URL: url, API: api.url }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
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
