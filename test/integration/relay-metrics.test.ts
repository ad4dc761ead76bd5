/**
 * The relay process's /metrics after real work: the real process on a database of
 * its own and a nats-server of this test's own. Its lag gauges read the events
 * waiting (held back by a row lock, then by a stream that is gone), published
 * events and failed rounds are counted, and the webhook sender counts each
 * attempt's result, a delivery that failed for good and an endpoint disabled.
 */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from '../../dev/nats';
import { createApiClient } from '../../src/api/auth';
import { migrate } from '../../src/db/migrate';
import { createPool, type Db, type Tx } from '../../src/db/pool';
import { ensureEventStream } from '../../src/orders/relay';
import { createEndpoint } from '../../src/webhooks/endpoints';
import { DEFAULT_RETRY_SCHEDULE_MS } from '../../src/webhooks/sender';
import { parseSealingKey } from '../../src/webhooks/signing';
import { createTestDatabase } from '../helpers/context';
import { metricsUrlIn, scrape } from '../helpers/metrics';
import { startEntry } from '../helpers/processes';
import { promtoolCheckMetrics } from '../helpers/promtool';
import { placeClientOrder } from '../helpers/client-orders';
import { until } from '../helpers/until';

let nats: NatsServer;
let nc: NatsConnection;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db;
let held: Tx | undefined;
let receiver: http.Server;
let relay: ChildProcess | undefined;
const keyBase64 = randomBytes(32).toString('base64');

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  database = await createTestDatabase('relay_metrics');
  await migrate(database.url);
  db = createPool({ connectionString: database.url, max: 3 });
  // /ok takes every delivery, /down refuses every one.
  receiver = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(req.url === '/ok' ? 200 : 500).end());
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  if (relay && relay.exitCode === null && relay.signalCode === null) relay.kill('SIGKILL');
  await held?.query('ROLLBACK').catch(() => undefined);
  held?.release();
  receiver?.closeAllConnections();
  await new Promise((r) => receiver?.close(r));
  await nc?.close();
  await db?.end();
  await nats?.stop();
  await database?.drop();
});

const place = (clientId: string, customerId: string) => placeClientOrder(db, clientId, customerId);

async function endpointFor(name: string, path: string): Promise<{ clientId: string; endpointId: string }> {
  const client = await createApiClient(db, name);
  const endpoint = await createEndpoint(db, {
    clientId: client.id,
    url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}${path}`,
    sealingKey: parseSealingKey(keyBase64),
    allowPrivate: true,
  });
  return { clientId: client.id, endpointId: endpoint.id };
}

test('the relay reads its lag and counts what it publishes and fails; the webhook sender counts results, failures for good and disabled endpoints', async () => {
  const ok = await endpointFor('metrics-ok', '/ok');
  const down = await endpointFor('metrics-down', '/down');
  await place(ok.clientId, 'lag-a');
  const failing = await place(down.clientId, 'lag-b');
  // Written two minutes ago; and the down endpoint's delivery on its last retry, its
  // endpoint one failure short of being disabled (30 in a row), as after a long outage.
  await db.query(`UPDATE order_events SET occurred_at = now() - interval '2 minutes'`);
  await db.query(`UPDATE webhook_deliveries SET attempts = $2 WHERE order_id = $1`, [failing, DEFAULT_RETRY_SCHEDULE_MS.length]);
  await db.query(`UPDATE webhook_endpoints SET consecutive_failures = 29 WHERE id = $1`, [down.endpointId]);
  // Both events locked by another transaction: the relay skips them, so they wait.
  held = await db.connect();
  await held.query('BEGIN');
  expect((await held.query('SELECT position FROM order_events FOR UPDATE')).rowCount).toBe(2);

  const started = await startEntry(
    'bin/relay.ts',
    { ...process.env, DATABASE_URL: database.url, NATS_URL: nats.url, WEBHOOK_SECRETS_KEY: keyBase64, WEBHOOK_ALLOW_PRIVATE_URLS: 'true', METRICS_PORT: '0' },
    'relay publishing',
  );
  relay = started.child;
  const url = metricsUrlIn(started.out());
  const read = async () => {
    const m = await scrape(url);
    return {
      published: m('sagaflow_relay_events_published_total') ?? 0,
      created: m('sagaflow_relay_events_published_total', { type: 'created' }) ?? 0,
      failures: m('sagaflow_relay_publish_failures_total'),
      unpublished: m('sagaflow_relay_unpublished_events'),
      oldestAge: m('sagaflow_relay_oldest_unpublished_age_seconds'),
      delivered: m('sagaflow_webhook_attempts_total', { result: 'delivered' }),
      rejected: m('sagaflow_webhook_attempts_total', { result: 'rejected' }),
      unreachable: m('sagaflow_webhook_attempts_total', { result: 'unreachable' }),
      failedForGood: m('sagaflow_webhook_deliveries_failed_total'),
      endpointsDisabled: m('sagaflow_webhook_endpoints_disabled_total'),
      pendingDeliveries: m('sagaflow_webhook_pending_deliveries'),
      disabledNow: m('sagaflow_webhook_disabled_endpoints'),
    };
  };

  // The webhooks go out meanwhile (deliveries do not wait for the broker); the events wait. The
  // gauges are read from PostgreSQL at scrape, by a probe that keeps its last values when it takes
  // over 2 s (a loaded machine): wait for the counters and the gauges both.
  const locked = await until(
    read,
    (v) => v.delivered === 1 && v.rejected === 1 && v.pendingDeliveries === 0 && v.disabledNow === 1,
    'both webhook attempts, counted and written',
  );
  expect(locked).toEqual({
    published: 0,
    created: 0,
    failures: 0,
    unpublished: 2,
    oldestAge: expect.any(Number),
    delivered: 1,
    rejected: 1,
    unreachable: 0,
    failedForGood: 1,
    endpointsDisabled: 1,
    pendingDeliveries: 0,
    disabledNow: 1,
  });
  expect(locked.oldestAge).toBeGreaterThanOrEqual(120);

  await held.query('ROLLBACK');
  held.release();
  held = undefined;
  const caughtUp = await until(read, (v) => v.created === 2 && v.unpublished === 0, 'both events published');
  expect(caughtUp).toMatchObject({ published: 2, created: 2, failures: 0, unpublished: 0, oldestAge: 0 });

  // The stream gone: every round fails and the new event waits; back, it is published.
  await (await jetstreamManager(nc)).streams.delete('SAGAFLOW_ORDER_EVENTS');
  await place(ok.clientId, 'lag-c');
  const failingRounds = await until(read, (v) => (v.failures ?? 0) >= 1 && v.unpublished === 1, 'a failed round, the event waiting');
  expect(failingRounds).toMatchObject({ published: 2, unpublished: 1 });
  await ensureEventStream(nc);
  const recovered = await until(read, (v) => v.created === 3 && v.unpublished === 0, 'the waiting event published');
  expect(recovered).toMatchObject({ published: 3, unpublished: 0, oldestAge: 0 });
  expect(recovered.failures).toBeGreaterThanOrEqual(1);
  // The whole page passes Prometheus's own linter.
  expect(await promtoolCheckMetrics(await (await fetch(url)).text())).toBe('');

  relay.kill('SIGTERM');
  expect(await new Promise<number | null>((r) => relay!.once('exit', (c) => r(c)))).toBe(0);
}, 180_000);
