/**
 * sagaflow's database as a primary with a synchronous standby under pg_auto_failover
 * (dev/postgres-ha.ts), every part on it through one multi-host URL: the API (startApi),
 * a worker and the simulated provider and carrier, each with its own pool, Temporal on
 * its own database (the test stack's dev server). Orders stream in through the real API
 * from clients that retry with the same Idempotency-Key, while
 *  - the primary's PostgreSQL and its keeper are SIGKILLed: the monitor promotes the
 *    standby, every part follows, and the old primary, started again, rejoins as standby;
 *  - the standby's are SIGKILLed: the primary goes on alone (number_sync_standbys 0),
 *    and the standby, started again, catches up and is synchronous again.
 * Each prints what it cost (failover time, requests answered 503, the longest write stall)
 * and the audit: no acknowledged order lost, no effect twice, no saga left open.
 *
 *   npx jest -c jest.cluster.config.js test-cluster/postgres-ha.test.ts
 */
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createApiClient } from '../src/api/auth';
import { startApi, type RunningApi } from '../src/api/server';
import { dataConverterFromEnv } from '../src/codec/settings';
import { migrate } from '../src/db/migrate';
import { createPool, type Db } from '../src/db/pool';
import { auditBooks } from '../src/orders/audit';
import { reconcileSimulatedServices } from '../dev/services/reconcile';
import { clientConnectionOptions } from '../src/temporal-connect';
import { startCarrier } from '../dev/services/carrier';
import type { RunningService } from '../dev/services/http';
import { startPaymentProvider } from '../dev/services/payment-provider';
import { startPostgresHa, type HaNode, type PostgresHa } from '../dev/postgres-ha';
import { createSagaWorker } from '../workers/worker';
import { orderWorkflowId } from '../workflows/order/ids';
import { uniqueId } from '../test/helpers/context';

const SKU = 'ha-widget';
let ha: PostgresHa;
/** Each part's own pool, as each would be its own process: the API's, the worker's, the services', the audit's. */
const pools: Record<'api' | 'worker' | 'services' | 'audit', Db> = {} as never;
let payment: RunningService;
let carrier: RunningService;
let api: RunningApi;
let connection: Connection;
let nativeConnection: NativeConnection;
let temporal: Client;
let stopWorker: () => Promise<void>;
let apiKey: string;
const taskQueue = uniqueId('ha');
const log = (m: string) => process.stdout.write(`[postgres ha] ${m}\n`);
/** What a test started and must stop even when it fails: its order stream, its write probe. */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c().catch(() => undefined);
});

beforeAll(async () => {
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
  } catch {
    // installed by an earlier file in this process
  }
  ha = await startPostgresHa({ log });
  await ha.waitUntilReplicating();
  await migrate(ha.url);
  pools.api = createPool({ connectionString: ha.url, max: 10 });
  pools.worker = createPool({ connectionString: ha.url, max: 10 });
  pools.services = createPool({ connectionString: ha.url, max: 10 });
  pools.audit = createPool({ connectionString: ha.url, max: 2 });
  await pools.audit.query('INSERT INTO inventory (sku, on_hand) VALUES ($1, 100000)', [SKU]);
  payment = await startPaymentProvider({ db: pools.services });
  carrier = await startCarrier({ db: pools.services });
  const address = process.env.TEMPORAL_ADDRESS!;
  connection = await Connection.connect(clientConnectionOptions({ address }));
  temporal = new Client({ connection, namespace: 'default', dataConverter: dataConverterFromEnv() });
  nativeConnection = await NativeConnection.connect(clientConnectionOptions({ address }));
  const worker = await createSagaWorker({
    connection: nativeConnection,
    namespace: 'default',
    taskQueue,
    deps: { db: pools.worker, paymentProviderUrl: payment.url, carrierUrl: carrier.url, providerTimeoutMs: 3000 },
  });
  const running = worker.run();
  stopWorker = async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running;
  };
  api = await startApi({ db: pools.api, temporal, taskQueue, log: () => undefined });
  apiKey = (await createApiClient(pools.api, uniqueId('ha-client'))).apiKey;
}, 180_000);

afterAll(async () => {
  await api?.close();
  await stopWorker?.();
  await nativeConnection?.close();
  await connection?.close();
  await payment?.close();
  await carrier?.close();
  await Promise.all(Object.values(pools).map((p) => p?.end().catch(() => undefined)));
  await ha?.stop();
});

test('the formation: a primary and a synchronous standby (ANY 1), number_sync_standbys 0', async () => {
  const { primary, standbys } = await ha.waitUntilReplicating();
  expect(standbys).toHaveLength(1);
  const { numberSyncStandbys, synchronousStandbyNames } = await ha.replication();
  expect(numberSyncStandbys).toBe(0);
  expect(synchronousStandbyNames).toMatch(/^ANY 1 \(pgautofailover_standby_\d+\)$/);
  const rep = await pools.audit.query<{ sync_state: string; state: string; port: number }>(
    'SELECT sync_state, state, inet_server_port() AS port FROM pg_stat_replication',
  );
  // The standby streams and counts for the commit quorum, and a commit waits for its flush there:
  // an acknowledged commit is on both nodes.
  expect(rep.rows).toEqual([{ sync_state: 'quorum', state: 'streaming', port: primary.port }]);
  expect((await pools.audit.query<{ s: string }>("SELECT current_setting('synchronous_commit') AS s")).rows[0]!.s).toBe('on');
});

/** One POST's attempts: a client that retries the same Idempotency-Key until it gets an answer that is not 5xx. */
interface Attempt {
  sentAt: number;
  answeredAt: number;
  status: number;
}

/**
 * Clients placing orders through the API, one after another each, at most `rate` a second in all, until
 * stopped. A 5xx or a failed request is retried with the same key after 200 ms, a 409 request-in-flight
 * (an earlier attempt's lease on the key, left by a request that died with the primary) after its
 * Retry-After: the order is acknowledged once a 201 comes back.
 */
function orderStream(opts: { clients: number; rate: number; tag: string }) {
  const attempts: Attempt[] = [];
  const acknowledged: { orderId: string; key: string; at: number }[] = [];
  let stopped = false;
  let next = 0;
  const gap = (opts.clients * 1000) / opts.rate;
  const place = async (i: number) => {
    const key = `${opts.tag}-${i}`;
    const body = JSON.stringify({
      customerId: `${opts.tag}-${i}`,
      items: [{ sku: SKU, quantity: 1 }],
      amount: { amountMinor: 1_000 + i, currency: 'EUR' },
      paymentToken: 'tok_visa',
      shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
    });
    for (;;) {
      const sentAt = Date.now();
      let status = 0;
      let id: string | undefined;
      let retryAfterMs = 200;
      try {
        const res = await fetch(`${api.url}/orders`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'idempotency-key': key, 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(30_000),
        });
        status = res.status;
        const answer = (await res.json()) as { id?: string; type?: string };
        id = answer.id;
        if (status === 409 && answer.type === 'urn:sagaflow:problem:request-in-flight') {
          retryAfterMs = Number(res.headers.get('retry-after') ?? 1) * 1000;
        } else if (status !== 201 && status < 500) {
          throw new Error(`POST /orders answered ${status} for ${key}: ${JSON.stringify(answer)}`);
        }
      } catch (err) {
        if ((err as Error).message.startsWith('POST /orders answered')) throw err;
        status = 0;
      }
      attempts.push({ sentAt, answeredAt: Date.now(), status });
      if (status === 201 && id) return acknowledged.push({ orderId: id, key, at: Date.now() });
      await new Promise((r) => setTimeout(r, retryAfterMs));
    }
  };
  const errors: Error[] = [];
  const loops = Array.from({ length: opts.clients }, async () => {
    while (!stopped && !errors.length) {
      const started = Date.now();
      await place(next++).catch((err: Error) => errors.push(err));
      await new Promise((r) => setTimeout(r, Math.max(0, gap - (Date.now() - started))));
    }
  });
  cleanups.push(async () => {
    stopped = true;
    await Promise.all(loops);
  });
  return {
    attempts,
    acknowledged,
    /** Resolves once n orders in all have been acknowledged. */
    async until(n: number, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (acknowledged.length < n) {
        if (errors.length) throw errors[0]!;
        if (Date.now() > deadline) throw new Error(`only ${acknowledged.length} of ${n} orders acknowledged in ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      stopped = true;
      await Promise.all(loops);
      if (errors.length) throw errors[0]!;
    },
  };
}

/** A write on the primary every 50 ms through a pool of its own: the moments writes stop and start again. */
function writeProbe() {
  const db = createPool({ connectionString: ha.url, max: 1 });
  const ok: number[] = [];
  let stopped = false;
  const loop = (async () => {
    await db.query('CREATE TABLE IF NOT EXISTS ha_probe (at timestamptz NOT NULL DEFAULT now())');
    while (!stopped) {
      await db.query('INSERT INTO ha_probe DEFAULT VALUES').then(
        () => ok.push(Date.now()),
        () => undefined,
      );
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  cleanups.push(async () => {
    stopped = true;
    await loop;
    await db.end();
  });
  return {
    /** The first write that succeeded after t. */
    firstAfter: (t: number) => ok.find((x) => x > t),
    async stop() {
      stopped = true;
      await loop;
      await db.end();
    },
  };
}

/** Every acknowledged order in the database, every saga closed, the books balanced, no effect twice. */
async function auditAfter(acknowledged: { orderId: string }[]) {
  const ids = acknowledged.map((a) => a.orderId);
  const stuck: string[] = [];
  const timers: NodeJS.Timeout[] = [];
  await Promise.all(
    ids.map(async (id) => {
      const closed = await Promise.race([
        temporal.workflow.getHandle(orderWorkflowId(id)).result().then(() => true, () => true),
        new Promise<boolean>((r) => timers.push(setTimeout(() => r(false), 90_000))),
      ]);
      if (!closed) stuck.push(id);
    }),
  );
  timers.forEach(clearTimeout);
  const rows = await pools.audit.query<{ id: string; status: string; failure_reason: string | null }>(
    'SELECT id, status, failure_reason FROM orders WHERE id = ANY ($1::text[])',
    [ids],
  );
  const stored = new Map(rows.rows.map((r) => [r.id, r.status]));
  const lost = ids.filter((id) => !stored.has(id));
  const pending = ids.filter((id) => stored.get(id) === 'pending');
  const byStatus: Record<string, number> = {};
  for (const s of stored.values()) byStatus[s] = (byStatus[s] ?? 0) + 1;
  const failureReasons = [...new Set(rows.rows.filter((r) => r.failure_reason).map((r) => r.failure_reason!.slice(0, 160)))];
  // Two charges or two labels for one order, under any key, or stock moved twice for one.
  const doubles = await pools.audit.query<{ what: string; order_id: string; n: number }>(
    `SELECT 'charge' AS what, order_id, count(*)::int AS n FROM payments WHERE status IN ('captured', 'refunded') GROUP BY order_id HAVING count(*) > 1
     UNION ALL
     SELECT 'label', order_id, count(*)::int FROM shipments WHERE status = 'created' GROUP BY order_id HAVING count(*) > 1
     UNION ALL
     SELECT 'provider charge', split_part(idempotency_key, '/', 1), count(*)::int FROM provider_charges
      WHERE status IN ('succeeded', 'refunded') GROUP BY 2 HAVING count(*) > 1
     UNION ALL
     SELECT 'reservation', order_id, sum(quantity)::int FROM reservations GROUP BY order_id HAVING sum(quantity) > 1`,
  );
  const audit = await auditBooks(pools.audit, { settled: true, checks: [reconcileSimulatedServices] });
  return { lost, stuck, pending, byStatus, failureReasons, doubles: doubles.rows, violations: audit.violations };
}

const seconds = (ms: number | undefined) => (ms === undefined ? 'never' : `${(ms / 1000).toFixed(2)} s`);

/** The longest a client waited between two answers (201 or 5xx) around t: how long writes stood still. */
function longestWait(attempts: Attempt[], from: number, to: number): number {
  return Math.max(0, ...attempts.filter((a) => a.sentAt >= from && a.sentAt <= to).map((a) => a.answeredAt - a.sentAt));
}

async function waitForPrimaryOtherThan(node: HaNode, timeoutMs = 60_000): Promise<HaNode> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await ha.primary().catch(() => undefined);
    if (p && p.name !== node.name) return p;
    if (Date.now() > deadline) throw new Error(`no failover away from ${node.name} in ${timeoutMs} ms: ${JSON.stringify(await ha.state())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('the primary SIGKILLed under a stream of orders: the standby is promoted, the old primary rejoins as standby; no acknowledged order lost, no effect twice, no saga open', async () => {
  const { primary: victim } = await ha.waitUntilReplicating();
  const stream = orderStream({ clients: 2, rate: 4, tag: uniqueId('p') });
  const probe = writeProbe();
  await stream.until(8);
  const acknowledgedBefore = stream.acknowledged.length;
  const killedAt = Date.now();
  await ha.kill(victim);
  const promoted = await waitForPrimaryOtherThan(victim);
  const promotedAt = Date.now();
  // The first order acknowledged for a request sent after the kill: a write on the new primary, end to end.
  await stream.until(stream.acknowledged.length + 1);
  const firstOrder = stream.attempts.find((a) => a.sentAt > killedAt && a.status === 201);
  const firstWrite = probe.firstAfter(killedAt);
  await stream.until(stream.acknowledged.length + 4);
  await stream.stop();
  await probe.stop();
  // The old primary, started again, rejoins as a standby of the new one.
  await ha.start(victim);
  const { primary, standbys } = await ha.waitUntilReplicating();
  const rejoinedAt = Date.now();
  expect(primary.name).toBe(promoted.name);
  expect(standbys.map((s) => s.name)).toEqual([victim.name]);
  const during = stream.attempts.filter((a) => a.sentAt >= killedAt && a.sentAt <= (firstOrder?.answeredAt ?? Date.now()));
  const unavailable = during.filter((a) => a.status === 503).length;
  const inFlight = stream.attempts.filter((a) => a.status === 409).length;
  const otherFailures = during.filter((a) => ![201, 409, 503].includes(a.status)).length;
  const books = await auditAfter(stream.acknowledged);
  log(
    [
      `primary ${victim.name} SIGKILLed (postgres and keeper); ${promoted.name} promoted ${seconds(promotedAt - killedAt)} after the kill`,
      `  failover time (kill to first write on the new primary): ${seconds(firstWrite && firstWrite - killedAt)}; to the first order acknowledged (201): ${seconds(firstOrder && firstOrder.answeredAt - killedAt)}`,
      `  requests answered 503 meanwhile: ${unavailable}; 409 request-in-flight (a key leased by a request that died with the primary): ${inFlight}; other failures: ${otherFailures}; longest request: ${seconds(longestWait(stream.attempts, killedAt - 1000, rejoinedAt))}`,
      `  ${victim.name} rejoined as standby ${seconds(rejoinedAt - killedAt)} after the kill; synchronous again: ${(await ha.replication()).synchronousStandbyNames}`,
      `  orders: ${stream.acknowledged.length} acknowledged (${acknowledgedBefore} before the kill), ${stream.attempts.length} requests; outcomes ${JSON.stringify(books.byStatus)}`,
      ...books.failureReasons.map((r) => `    failed: ${r}`),
      `  audit: ${books.lost.length} acknowledged orders lost, ${books.doubles.length} double effects, ${books.stuck.length} sagas open, ${books.violations.length} violations`,
    ].join('\n'),
  );
  expect(books.lost).toEqual([]);
  expect(books.doubles).toEqual([]);
  expect(books.stuck).toEqual([]);
  expect(books.pending).toEqual([]);
  expect(books.violations).toEqual([]);
  expect(firstWrite).toBeDefined();
  expect(otherFailures).toBe(0);
}, 150_000);

test('the standby SIGKILLed: the primary goes on alone (writes wait for the monitor, none refused), the standby catches up and is synchronous again', async () => {
  for (const n of ha.nodes) await ha.start(n);
  const { primary, standbys } = await ha.waitUntilReplicating();
  const victim = standbys[0]!;
  const stream = orderStream({ clients: 2, rate: 4, tag: uniqueId('s') });
  const probe = writeProbe();
  await stream.until(8);
  const killedAt = Date.now();
  await ha.kill(victim);
  // The monitor drops the standby from the quorum (wait_primary): commits stop waiting for it.
  const deadline = Date.now() + 60_000;
  while ((await ha.state()).find((s) => s.name === primary.name)?.reported !== 'wait_primary') {
    if (Date.now() > deadline) throw new Error(`the primary never went on alone: ${JSON.stringify(await ha.state())}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const aloneAt = Date.now();
  expect((await ha.replication()).synchronousStandbyNames).toBe('');
  await stream.until(stream.acknowledged.length + 6);
  const firstWrite = probe.firstAfter(killedAt);
  await stream.stop();
  await probe.stop();
  await ha.start(victim);
  const back = await ha.waitUntilReplicating();
  const syncAgainAt = Date.now();
  expect(back.primary.name).toBe(primary.name);
  const during = stream.attempts.filter((a) => a.sentAt >= killedAt && a.sentAt <= aloneAt);
  const books = await auditAfter(stream.acknowledged);
  log(
    [
      `standby ${victim.name} SIGKILLed; ${primary.name} went on alone (wait_primary, synchronous_standby_names '') ${seconds(aloneAt - killedAt)} after the kill`,
      `  first write after the kill: ${seconds(firstWrite && firstWrite - killedAt)} (commits under way waited for the monitor, then went through)`,
      `  requests answered 503 meanwhile: ${during.filter((a) => a.status === 503).length}; longest request: ${seconds(longestWait(stream.attempts, killedAt - 1000, syncAgainAt))}`,
      `  ${victim.name} caught up and is a synchronous standby again ${seconds(syncAgainAt - killedAt)} after the kill: ${(await ha.replication()).synchronousStandbyNames}`,
      `  orders: ${stream.acknowledged.length} acknowledged, ${stream.attempts.length} requests; outcomes ${JSON.stringify(books.byStatus)}`,
      `  audit: ${books.lost.length} acknowledged orders lost, ${books.doubles.length} double effects, ${books.stuck.length} sagas open, ${books.violations.length} violations`,
    ].join('\n'),
  );
  expect(during.filter((a) => a.status !== 201)).toEqual([]);
  expect(books.lost).toEqual([]);
  expect(books.doubles).toEqual([]);
  expect(books.stuck).toEqual([]);
  expect(books.pending).toEqual([]);
  expect(books.violations).toEqual([]);
}, 120_000);
