/**
 * Production runs compiled JavaScript, not ts-node: `npm run build` emits it
 * (SQL migrations included), and `node dist/bin/sagaflow.js` migrates a fresh
 * database, starts a worker and the API, and the API's order completes on that
 * worker.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { holdDist } from '../helpers/dist-lock';
import { createApiClient } from '../../src/api/auth';
import { createPool, type Db } from '../../src/db/pool';
import { seedCatalogue } from '../../dev/catalogue';
import { createTestContext, createTestDatabase, uniqueId, type TestContext } from '../helpers/context';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
const SAGAFLOW = path.join(ROOT, 'dist/bin/sagaflow.js');
let ctx: TestContext;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let url: string;
let db: Db | undefined;
const children: ChildProcess[] = [];

/** `node dist/bin/sagaflow.js <args>` until it prints `marker`; resolves with the matching line. */
function start(args: string[], env: Record<string, string>, marker: RegExp): Promise<RegExpExecArray> {
  const child = spawn(process.execPath, [SAGAFLOW, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (b: Buffer) => {
      out += b.toString();
      const m = marker.exec(out);
      if (m) resolve(m);
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`sagaflow ${args[0]} exited ${code}:\n${out}`)));
  });
}

let releaseDist: (() => void) | undefined;

beforeAll(async () => {
  ctx = await createTestContext('dist');
  // Held until the end: every process this file starts runs what this build made.
  releaseDist = await holdDist();
  await run('npm', ['run', '-s', 'build'], { cwd: ROOT, maxBuffer: 16 << 20 });
  database = await createTestDatabase('dist');
  url = database.url;
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : undefined)));
  await db?.end();
  await ctx?.close();
  await database?.drop();
  releaseDist?.();
});

test('node dist/bin/sagaflow.js migrates a fresh database, runs a worker and the API, and an order completes', async () => {
  const migrated = await run(process.execPath, [SAGAFLOW, 'migrate'], { cwd: ROOT, env: { ...process.env, DATABASE_URL: url } });
  const last = fs.readdirSync(path.join(ROOT, 'src/db/migrations')).sort().at(-1)!.replace(/\.sql$/, '');
  expect(migrated.stdout).toMatch(new RegExp(`^applied: ledger/1_step_ledger, .*, 001_sagaflow_schema, .*${last}$`, 'm'));

  db = createPool({ connectionString: url });
  await seedCatalogue(db);
  const taskQueue = uniqueId('dist');
  const env = {
    DATABASE_URL: url,
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS!,
    TEMPORAL_NAMESPACE: ctx.namespace,
    TEMPORAL_TASK_QUEUE: taskQueue,
    PAYMENT_PROVIDER_URL: ctx.payment.url,
    CARRIER_URL: ctx.carrier.url,
    METRICS_PORT: '0',
    API_PORT: '0',
    LOG_LEVEL: 'info',
  };
  await start(['worker'], env, /"msg":"worker ready"/);
  const [, apiUrl] = await start(['api'], env, /"url":"([^"]+)"[^\n]*"msg":"api ready"/);
  const { apiKey } = await createApiClient(db, 'dist');
  const res = await fetch(`${apiUrl}/orders?wait=20s`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'idempotency-key': 'dist-1', 'content-type': 'application/json' },
    body: JSON.stringify({
      customerId: 'c1',
      items: [{ sku: 'widget', quantity: 1 }],
      amount: { amountMinor: 1000, currency: 'EUR' },
      paymentToken: 'tok_visa',
      shippingAddress: { name: 'A', line1: 'B', city: 'C', postalCode: 'D', country: 'DE' },
    }),
  });
  const body = (await res.json()) as { id: string; status: string };
  expect({ status: res.status, order: body.status }).toEqual({ status: 201, order: 'completed' });
  const { rows } = await db.query('SELECT o.status, i.on_hand FROM orders o, inventory i WHERE o.id = $1 AND i.sku = $2', [body.id, 'widget']);
  expect(rows).toEqual([{ status: 'completed', on_hand: 99 }]);
}, 180_000);
