/**
 * The intake process's /metrics after real processing: the real process on a
 * database of its own, a nats-server of this test's own and the real Temporal
 * server. Each outcome moves its counter (started, duplicate, retried, dead-lettered
 * by reason), and the gauges read what waits: the message in hand, the consumer's
 * unsettled messages, the dead-letter stream's depth.
 */
import type { ChildProcess } from 'node:child_process';
import { jetstream } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from '../../dev/nats';
import { createPool, type Db, type Tx } from '../../src/db/pool';
import { DeadLetterHeaders } from '../../packages/toolkit/src/inbox/jetstream';
import { createTestDatabase, uniqueId } from '../helpers/context';
import { metricsUrlIn, scrape } from '../helpers/metrics';
import { startEntry } from '../helpers/processes';
import { promtoolCheckMetrics } from '../helpers/promtool';
import { until } from '../helpers/until';

let nats: NatsServer;
let nc: NatsConnection;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db | undefined;
let held: Tx | undefined;
let intake: ChildProcess | undefined;

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  database = await createTestDatabase('intake_metrics');
});

afterAll(async () => {
  if (intake && intake.exitCode === null && intake.signalCode === null) intake.kill('SIGKILL');
  await held?.query('ROLLBACK').catch(() => undefined);
  held?.release();
  await nc?.close();
  await db?.end();
  await nats?.stop();
  await database?.drop();
});

const order = (customerId: string) =>
  JSON.stringify({
    customerId,
    items: [{ sku: 'widget', quantity: 1 }],
    amount: { amountMinor: 990, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  });

/** A message ID the intake reads that the broker does not dedupe on (Nats-Msg-Id it would). */
const ownId = (id: string) => {
  const h = headers();
  h.set(DeadLetterHeaders.messageId, id);
  return { headers: h };
};

test('the intake counts each outcome and reads its backlog: started, duplicate, dead letters by reason, a retried message in hand', async () => {
  const started = await startEntry(
    'bin/intake.ts',
    {
      ...process.env,
      DATABASE_URL: database.url,
      NATS_URL: nats.url,
      TEMPORAL_TASK_QUEUE: uniqueId('intake-metrics'),
      SAGAFLOW_SEARCH_ATTRIBUTES: 'false',
      METRICS_PORT: '0',
      LOG_LEVEL: 'info',
    },
    'intake consuming',
  );
  intake = started.child;
  const url = metricsUrlIn(started.out());
  const counts = async () => {
    const m = await scrape(url);
    return {
      started: m('sagaflow_intake_messages_total', { outcome: 'started' }),
      duplicate: m('sagaflow_intake_messages_total', { outcome: 'duplicate' }),
      retried: m('sagaflow_intake_messages_total', { outcome: 'retried' }),
      deadLettered: m('sagaflow_intake_messages_total', { outcome: 'dead_lettered' }),
      invalid: m('sagaflow_intake_dead_letters_total', { reason: 'invalid' }),
      conflict: m('sagaflow_intake_dead_letters_total', { reason: 'conflict' }),
      exhausted: m('sagaflow_intake_dead_letters_total', { reason: 'exhausted' }),
      inFlight: m('sagaflow_intake_in_flight_messages'),
      pending: m('sagaflow_intake_pending_messages'),
      deadLetterDepth: m('sagaflow_intake_dead_letter_messages'),
    };
  };
  // Every series is there from the start, at 0.
  expect(await counts()).toEqual({ started: 0, duplicate: 0, retried: 0, deadLettered: 0, invalid: 0, conflict: 0, exhausted: 0, inFlight: 0, pending: 0, deadLetterDepth: 0 });

  const js = jetstream(nc);
  await js.publish('sagaflow.orders.requested', order('m-a'), ownId('m-1'));
  await until(counts, (c) => c.started === 1, 'the first order started');
  // The same message again, and its ID reused for another order; then a body that is no order.
  await js.publish('sagaflow.orders.requested', order('m-a'), ownId('m-1'));
  await js.publish('sagaflow.orders.requested', order('m-other'), ownId('m-1'));
  await js.publish('sagaflow.orders.requested', '{"not": "an order"}', ownId('m-bad'));
  await until(counts, (c) => c.duplicate === 1 && c.deadLettered === 2 && c.pending === 0, 'the three settled');
  expect(await counts()).toEqual({ started: 1, duplicate: 1, retried: 0, deadLettered: 2, invalid: 1, conflict: 1, exhausted: 0, inFlight: 0, pending: 0, deadLetterDepth: 2 });

  // A message held in hand: another transaction holds its inbox record uncommitted, so the
  // intake's claim waits on the row lock. Cancelling that wait fails the delivery (retried);
  // once the record is given up, the redelivery makes the order.
  db = createPool({ connectionString: database.url, max: 2 });
  held = await db.connect();
  await held.query('BEGIN');
  await held.query(
    `INSERT INTO inbox_messages (source, message_id, fingerprint, resource_id, expires_at) VALUES ('SAGAFLOW_ORDERS', 'm-held', 'x', 'ord_x', now() + interval '1 day')`,
  );
  await js.publish('sagaflow.orders.requested', order('m-held'), ownId('m-held'));
  const waiting = await until(counts, (c) => c.inFlight === 1 && c.pending === 1, 'the message in hand, unsettled');
  expect(waiting).toMatchObject({ started: 1, retried: 0 });
  const blocked = () =>
    db!.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO inbox_messages%'`,
    );
  const [claim] = (await until(blocked, (r) => r.rows.length === 1, "the intake's claim waiting on the lock")).rows;
  await db.query('SELECT pg_cancel_backend($1)', [claim!.pid]);
  await until(counts, (c) => c.retried === 1, 'the failed delivery counted as retried');
  await held.query('ROLLBACK');
  held.release();
  held = undefined;
  await until(counts, (c) => c.started === 2 && c.pending === 0, 'the redelivery made the order');
  expect(await counts()).toEqual({ started: 2, duplicate: 1, retried: 1, deadLettered: 2, invalid: 1, conflict: 1, exhausted: 0, inFlight: 0, pending: 0, deadLetterDepth: 2 });
  // The whole page passes Prometheus's own linter.
  expect(await promtoolCheckMetrics(await (await fetch(url)).text())).toBe('');

  intake.kill('SIGTERM');
  expect(await new Promise<number | null>((r) => intake!.once('exit', (c) => r(c)))).toBe(0);
}, 180_000);
