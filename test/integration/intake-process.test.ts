/**
 * `npm run intake` as an operator runs it: the real process, on a database of its
 * own (it migrates it), a nats-server of this test's own and the real Temporal
 * server. It creates its streams, turns a message into an order and a saga, lists
 * and requeues a dead letter, is SIGKILLed and started again without making
 * anything twice, and stops on SIGTERM with exit 0.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from '../../dev/nats';
import { createPool, type Db } from '../../src/db/pool';
import { createTestDatabase, uniqueId } from '../helpers/context';
import { startEntry } from '../helpers/processes';
import { until } from '../helpers/until';
import { startBeforeJetStream } from '../helpers/stream-faults';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
let nats: NatsServer;
let nc: NatsConnection;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db | undefined;
const children: ChildProcess[] = [];
const taskQueue = uniqueId('intake-process');

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  database = await createTestDatabase('intake_process');
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await nc?.close();
  await db?.end();
  await nats?.stop();
  await database?.drop();
});

const env = () => ({
  ...process.env,
  DATABASE_URL: database.url,
  NATS_URL: nats.url,
  TEMPORAL_TASK_QUEUE: taskQueue,
  SAGAFLOW_SEARCH_ATTRIBUTES: 'false',
  INTAKE_MAX_DELIVER: '3',
  LOG_LEVEL: 'info',
});

/** Starts the intake; resolves once it says it consumes. */
async function startIntake(): Promise<{ child: ChildProcess; out: () => string }> {
  const started = await startEntry('bin/intake.ts', env(), 'intake consuming');
  children.push(started.child);
  return started;
}

const command = (...args: string[]) => run(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/intake.ts', ...args], { cwd: ROOT, env: env() });

const order = (customerId: string) =>
  JSON.stringify({
    customerId,
    items: [{ sku: 'widget', quantity: 1 }],
    amount: { amountMinor: 990, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  });

async function orders(): Promise<{ customer_id: string; started: boolean }[]> {
  db ??= createPool({ connectionString: database.url, max: 2 });
  return (await db.query<{ customer_id: string; started: boolean }>('SELECT customer_id, saga_started_at IS NOT NULL AS started FROM orders ORDER BY customer_id')).rows;
}

test('the intake process: orders from the stream, a dead letter listed and requeued, a SIGKILL survived, SIGTERM exits 0', async () => {
  const first = await startIntake();
  const js = jetstream(nc);
  await js.publish('sagaflow.orders.requested', order('proc-a'), { msgID: 'proc-1' });
  await js.publish('sagaflow.orders.requested', '{"not": "an order"}', { msgID: 'proc-bad' });
  expect(await until(orders, (o) => o.length === 1 && o[0]!.started, 'order proc-a with its saga')).toEqual([{ customer_id: 'proc-a', started: true }]);

  const listed = await until(
    async () => (await command('dead-letters')).stdout.trim(),
    (s) => s.length > 0,
    'a dead letter',
  );
  const [seq, reason, deliveries, messageId] = listed.split('\t');
  expect([reason, deliveries, messageId]).toEqual(['invalid', '1', 'proc-bad']);
  const requeued = await command('requeue', seq!);
  expect(requeued.stdout.trim()).toBe(`requeued dead letter ${seq} (invalid) to sagaflow.orders.requested`);
  // Still not an order: dead-lettered again, under a new sequence; the old one is gone.
  const again = await until(
    async () => (await command('dead-letters')).stdout.trim().split('\n'),
    (l) => l.length === 1 && !l[0]!.startsWith(`${seq}\t`),
    'dead-lettered again',
  );
  expect(again[0]!.split('\t').slice(1, 4)).toEqual(['invalid', '1', 'proc-bad']);
  const bad = await command('requeue', 'x').then(
    () => 'exit 0',
    (e: { code?: number; stderr?: string }) => `exit ${e.code}: ${e.stderr?.split('\n')[0]}`,
  );
  expect(bad).toBe('exit 2: requeue: a dead letter\'s sequence number, not "x"');

  // Killed outright; what is published meanwhile waits for the next intake, and nothing is made twice.
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  await js.publish('sagaflow.orders.requested', order('proc-b'), { msgID: 'proc-2' });
  const second = await startIntake();
  expect(await until(orders, (o) => o.length === 2 && o.every((x) => x.started), 'order proc-b')).toEqual([
    { customer_id: 'proc-a', started: true },
    { customer_id: 'proc-b', started: true },
  ]);

  second.child.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => second.child.once('exit', (c) => r(c)));
  expect(code).toBe(0);
}, 180_000);

test('a NATS without JetStream yet (just restarted, a cluster electing): the intake waits instead of exiting, and consumes once JetStream answers', async () => {
  const { child, out, nats: late } = await startBeforeJetStream('bin/intake.ts', env());
  children.push(child);
  try {
    expect(child.exitCode).toBeNull();
    await until(async () => out().includes('intake consuming'), (v) => v, 'the intake to start consuming');
    const lateNc = await connect({ servers: late.url });
    try {
      await jetstream(lateNc).publish('sagaflow.orders.requested', order('late-js'), { msgID: 'late-js-1' });
    } finally {
      await lateNc.close();
    }
    await until(orders, (rows) => rows.some((r) => r.customer_id === 'late-js'), 'the order from the stream');
    child.kill('SIGTERM');
    expect(await new Promise<number | null>((r) => child.once('exit', (code) => r(code)))).toBe(0);
  } finally {
    await late.stop();
  }
}, 120_000);
