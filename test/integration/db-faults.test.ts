/**
 * PostgreSQL connections terminated under every process, as an administrator
 * (or a failover) does it: nothing exits, the work in flight fails cleanly, is
 * retried, and the books agree afterwards. Real processes, real database, real HTTP.
 */
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client as PgClient } from 'pg';
import { createApiClient } from '../../src/api/auth';
import { freePort } from '../../src/ports';
import { createPool, type Db } from '../../src/db/pool';
import { migrate } from '../../src/db/migrate';
import { reconcileOrder } from '../../dev/services/reconcile';
import { databaseUrl, seedInventory, uniqueId } from '../helpers/context';
import { eventually, request, type ApiResponse } from '../helpers/api';
import { spawnNode, spawnWorker, type NodeProcess } from '../helpers/worker-process';

const run = promisify(execFile);

/** Runs one of test/helpers/scripts against the test database as its own process, and parses the JSON line it prints. */
async function runScript<T>(name: string, env: Record<string, string> = {}): Promise<T> {
  const script = path.resolve(__dirname, '../helpers/scripts', name);
  const { stdout } = await run(process.execPath, ['-r', 'ts-node/register/transpile-only', script], {
    env: { ...process.env, DATABASE_URL: databaseUrl(), ...env },
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim()) as T;
}

/** The last lines a process printed. */
function tail(p: NodeProcess): string {
  return p.output().split('\n').slice(-40).join('\n');
}

test('a transaction whose connection is terminated fails; the process lives on and the pool reconnects', async () => {
  const result = await runScript<Record<string, unknown>>('terminate-in-transaction.ts');
  expect(result.between).toMatch(/^failed: /);
  expect(result.during).toMatch(/^failed: 57P01 /);
  expect(result.idle).toBe('committed');
  expect(result.after).toBe(1);
});

test('a busy pool whose connections are terminated over and over: the process lives, every failure is a connection error, and work goes on', async () => {
  // Clients released inside a socket read go straight to waiting callers; a terminate message in
  // the same read once reached such a client before its taker listened, and ended the process.
  const result = await runScript<{ succeeded: number; terminated: number; failures: string[] }>('terminate-under-load.ts', { LOAD_MS: '5000' });
  expect(result.terminated).toBeGreaterThan(10);
  expect(result.succeeded).toBeGreaterThan(10);
  expect(result.failures.length).toBeGreaterThan(0);
  for (const f of result.failures) expect(f).toMatch(/^connection: /);
});

describe('the API, the services and a worker under terminated connections', () => {
  const dbName = `faults_${randomBytes(4).toString('hex')}`;
  let dbUrl: string;
  let db: Db;
  let admin: PgClient;
  const procs: NodeProcess[] = [];
  /** Prints where a slow run stands; cleared however the test ends. */
  let watchdog: NodeJS.Timeout | undefined;

  beforeAll(async () => {
    admin = new PgClient({ connectionString: databaseUrl() });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    const u = new URL(databaseUrl());
    u.pathname = `/${dbName}`;
    dbUrl = u.toString();
    await migrate(dbUrl);
    db = createPool({ connectionString: dbUrl });
  });

  afterAll(async () => {
    clearTimeout(watchdog);
    for (const p of procs) p.child.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await db?.end();
    await admin?.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin?.end();
  });

  /** For a failed wait: each unfinished order's status and ledger rows, and the end of each process's output. */
  async function whereTheyWait(orderIds: string[], procs: Record<string, NodeProcess>): Promise<string> {
    const orders = await db.query(
      `SELECT o.id, o.status, o.created_at, o.updated_at,
              coalesce(json_agg(json_build_object('step', l.step, 'state', l.state, 'attempts', l.attempts, 'at', l.updated_at)
                       ORDER BY l.created_at) FILTER (WHERE l.key IS NOT NULL), '[]') AS steps
         FROM orders o LEFT JOIN step_ledger l ON l.workflow_id = 'order-' || o.id
        WHERE o.id = ANY($1) AND o.status <> 'completed' GROUP BY o.id ORDER BY o.created_at`,
      [orderIds],
    );
    const tails = Object.entries(procs).map(([name, p]) => `--- ${name} (last lines)\n${tail(p)}`);
    return [`now ${new Date().toISOString()}; unfinished orders:`, JSON.stringify(orders.rows, null, 1), ...tails].join('\n');
  }

  /** Terminates every connection to the test database but the admin's, and returns how many. */
  async function terminateAll(): Promise<number> {
    const res = await admin.query(
      `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = $1 AND pid <> pg_backend_pid()`,
      [dbName],
    );
    return res.rows[0].n as number;
  }

  test('no process exits; every request ends 201 after 503 + Retry-After at worst; every saga completes with balanced books', async () => {
    const [paymentPort, carrierPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const taskQueue = uniqueId('faults');
    const env = {
      DATABASE_URL: dbUrl,
      TEMPORAL_TASK_QUEUE: taskQueue,
      PAYMENT_PROVIDER_PORT: String(paymentPort),
      CARRIER_PORT: String(carrierPort),
      PAYMENT_PROVIDER_URL: `http://127.0.0.1:${paymentPort}`,
      CARRIER_URL: `http://127.0.0.1:${carrierPort}`,
      API_PORT: String(apiPort),
    };
    const services = spawnNode('bin/services.ts', env, 'services listening');
    const api = spawnNode('bin/api.ts', env, 'api ready');
    const worker = spawnWorker(env);
    procs.push(services, api, worker);
    await Promise.all([services.ready, api.ready, worker.ready]);
    const base = `http://127.0.0.1:${apiPort}`;
    const { apiKey } = await createApiClient(db, uniqueId('faults'));
    const sku = uniqueId('sku');
    await seedInventory(db, { [sku]: 100 });

    const statuses: number[] = [];
    let terminated = 0;
    const orderIds: string[] = [];
    // A run that takes far longer than usual (18-20 s) says where it stands, whatever it waits on.
    let phase = 'placing orders';
    watchdog = setTimeout(() => {
      void whereTheyWait(orderIds, { services, api, worker }).then(
        (where) => console.log(`[db-faults] still ${phase} after 100 s; statuses so far ${statuses.join(' ')}\n${where}`),
        (err: Error) => console.log(`[db-faults] still ${phase} after 100 s; could not read the rows: ${err.message}`),
      );
    }, 100_000);
    for (let i = 0; i < 8; i++) {
      phase = `placing order ${i}`;
      terminated += await terminateAll();
      const key = uniqueId('key');
      const body = {
        customerId: 'cust-faults',
        items: [{ sku, quantity: 1 }],
        amount: { amountMinor: 1_000 + i, currency: 'EUR' },
        paymentToken: 'tok_visa',
        shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
      };
      // A client that retries with the same key, as the problem's Retry-After says.
      const res = await eventually<ApiResponse>(async () => {
        const r = await request(base, '/orders', { method: 'POST', apiKey, idempotencyKey: key, body });
        statuses.push(r.status);
        if (r.status === 503 || r.status === 409) {
          expect(r.headers.get('retry-after')).not.toBeNull();
          return undefined;
        }
        return r;
      }, `order ${i}`, 60, 250);
      expect(res.status).toBe(201);
      orderIds.push(res.json.id as string);
      // Connections die again while the saga runs its steps.
      await new Promise((r) => setTimeout(r, 150));
      terminated += await terminateAll();
    }
    expect(terminated).toBeGreaterThanOrEqual(8);
    phase = 'waiting for every order to complete';

    await eventually(
      async () => {
        // A process that died cannot finish the sagas: say so now, not at the end of the wait.
        for (const [name, p] of Object.entries({ services, api, worker })) {
          if (p.child.exitCode !== null || p.child.signalCode !== null) {
            throw new Error(`${name} exited (${p.child.exitCode ?? p.child.signalCode}):\n${tail(p)}`);
          }
        }
        const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM orders WHERE id = ANY($1) AND status = 'completed'`, [orderIds]);
        return rows[0]!.n === orderIds.length ? true : undefined;
      },
      'every order to complete',
      // A liveness bound, not a speed check: each local step may take ten attempts (about 30 s of
      // backoff) through terminated connections, and another test file may share the machine.
      720,
      250,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}\n${await whereTheyWait(orderIds, { services, api, worker })}`);
    });
    const took = await db.query<{ s: number }>(
      `SELECT extract(epoch FROM updated_at - created_at)::float AS s FROM orders WHERE id = ANY($1) ORDER BY created_at`,
      [orderIds],
    );
    clearTimeout(watchdog);
    console.log(`[db-faults] seconds from order to completion: ${took.rows.map((r) => r.s.toFixed(1)).join(' ')}`);
    // Nothing exited; no answer was a server error.
    for (const p of [services, api, worker]) expect(p.child.exitCode).toBeNull();
    expect(statuses.filter((s) => s >= 500 && s !== 503)).toEqual([]);
    for (const id of orderIds) expect((await reconcileOrder(db, id)).problems).toEqual([]);
    const pending = await db.query(`SELECT key FROM step_ledger WHERE state = 'pending'`);
    expect(pending.rows).toEqual([]);
  }, 300_000);
});
