import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { ConfigError, loadConfig, UsageError } from '../src/config';
import { migratePatiently } from '../src/db/migrate';
import { createPool } from '../src/db/pool';
import { createLogger } from '../src/observability/log';
import type { Checks } from '../src/observability/health';
import { SagaMetrics, serveMetrics } from '../src/observability/metrics';
import { ENDPOINT_EVENTS, ensureEventStream, ORDER_EVENTS, purgePublishedEvents, relayLag, runRelay } from '../src/orders/relay';
import { runMain } from '../src/run-main';
import { patiently } from '../src/patiently';
import { runWebhookSender, webhookBacklog } from '../src/webhooks/sender';
import { parseSealingKey } from '../src/webhooks/signing';

const USAGE = `usage: npm run relay [-- lag]

The outbox relay: publishes every order event (created, completed, cancelled,
compensated, compensation_failed, failed; written in the transaction of the
change) to the JetStream stream SAGAFLOW_ORDER_EVENTS, subject
sagaflow.orders.events.<type>, as a CloudEvent whose ID is its Nats-Msg-Id; in
order per order, at least once, never lost. A webhook endpoint disabled (or
enabled again) goes the same way to SAGAFLOW_WEBHOOK_EVENTS, subject
sagaflow.webhooks.events.<disabled|enabled>. Run one or several: each event is in
one relay's hands at a time. Published events older than OUTBOX_RETENTION_DAYS
(7) are purged every ten minutes.

With WEBHOOK_SECRETS_KEY set it also sends the API clients' webhook deliveries
(signed, retried, every attempt recorded; README, "Webhooks").

  (no command)   relay until SIGTERM or SIGINT
  lag            print the events not yet published and the age of the oldest, in ms

Needs DATABASE_URL and NATS_URL (\`npm run stack\` prints both). With METRICS_PORT
set (0: any free port) it serves /metrics, /healthz and /readyz on
METRICS_HOST:METRICS_PORT.`;

runMain(USAGE, async () => {
  const { positionals } = parseArgs({ allowPositionals: true, options: {} });
  const [command, ...extra] = positionals;
  if (extra.length || (command !== undefined && command !== 'lag')) throw new UsageError(`unknown command "${positionals.join(' ')}"`);
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required by the relay' }]);
  if (command === 'lag') {
    const db = createPool({ connectionString: config.DATABASE_URL, max: 1 });
    try {
      const lag = await relayLag(db);
      console.log(`${lag.unpublished}\t${lag.oldestMs}`);
    } finally {
      await db.end();
    }
    return 0;
  }
  if (!config.NATS_URL) throw new ConfigError([{ variable: 'NATS_URL', message: 'required by the relay (npm run stack prints one)' }]);
  const logger = createLogger({ service: 'sagaflow-relay', level: config.LOG_LEVEL });
  const metrics = new SagaMetrics({ processMetrics: true, role: 'relay' });
  let readiness: Checks = { relay: () => Promise.reject(new Error('starting')) };
  // Only when asked: several relays often share a host with a worker, which takes 9464 by default.
  const metricsServer = process.env.METRICS_PORT
    ? await serveMetrics(metrics, { host: config.METRICS_HOST, port: config.METRICS_PORT, readiness: () => readiness })
    : undefined;
  await migratePatiently(config.DATABASE_URL, { log: (l) => logger.info(l) });
  const db = createPool({ connectionString: config.DATABASE_URL, max: Math.min(config.DATABASE_POOL_MAX, 4) });
  // A NATS not up yet is waited for, as PostgreSQL is.
  const nc = await connect({ servers: config.NATS_URL.split(','), name: 'sagaflow-relay', maxReconnectAttempts: -1, waitOnFirstConnect: true });
  const stream = { ...ORDER_EVENTS, replicas: config.NATS_STREAM_REPLICAS };
  const endpointEvents = { ...ENDPOINT_EVENTS, replicas: config.NATS_STREAM_REPLICAS };
  // Connected is not ready: a NATS just restarted (or a cluster electing its leaders) answers
  // JetStream requests with timeouts for a while. Waited for, not a reason to exit.
  await patiently(
    'NATS JetStream',
    async () => {
      await ensureEventStream(nc, stream);
      await ensureEventStream(nc, endpointEvents);
    },
    { log: (l) => logger.info(l) },
  );
  const relay = runRelay({
    db,
    nc,
    stream,
    endpointEvents,
    onError: (err) => {
      metrics.relayFailures.inc();
      logger.warn({ err: err.message }, 'relay round failed; retrying');
    },
    onPublished: (types) => {
      for (const type of types) metrics.eventsPublished.inc({ type });
      logger.debug({ published: types.length }, 'events published');
    },
  });
  // Read at each scrape, from the table itself: the lag of every relay together, and the
  // webhook backlog even where no relay sends (WEBHOOK_SECRETS_KEY unset by mistake).
  metrics.onScrape(async () => {
    const [lag, hooks] = await Promise.all([relayLag(db), webhookBacklog(db)]);
    metrics.relayUnpublished.set(lag.unpublished);
    metrics.relayOldestAge.set(lag.oldestMs / 1000);
    metrics.webhookPending.set(hooks.pending);
    metrics.webhookOldestPendingAge.set(hooks.oldestMs / 1000);
    metrics.webhookDisabledEndpoints.set(hooks.disabledEndpoints);
  });
  readiness = { database: () => db.query('SELECT 1'), nats: () => nc.flush() };
  logger.info({ stream: ORDER_EVENTS.stream, nats: config.NATS_URL, metrics: metricsServer?.url ?? 'off (METRICS_PORT unset)' }, 'relay publishing');
  const webhooks = config.WEBHOOK_SECRETS_KEY
    ? runWebhookSender({
        db,
        sealingKey: parseSealingKey(config.WEBHOOK_SECRETS_KEY),
        allowPrivate: config.WEBHOOK_ALLOW_PRIVATE_URLS,
        retryScheduleMs: config.WEBHOOK_RETRY_SCHEDULE_MS,
        onAttempt: (a) => {
          metrics.webhookAttempts.inc({ result: a.ok ? 'delivered' : a.status === undefined ? 'unreachable' : 'rejected' });
          if (a.state === 'failed') metrics.webhookDeliveriesFailed.inc();
          if (a.ok) logger.debug(a, 'webhook delivered');
          else logger.warn(a, 'webhook attempt failed');
        },
        onDisabled: (endpointId, reason) => {
          metrics.webhookEndpointsDisabled.inc();
          logger.warn({ endpointId, reason }, 'webhook endpoint disabled');
        },
        onError: (err) => logger.warn({ err: err.message }, 'webhook round failed; retrying'),
      })
    : undefined;
  if (!webhooks) logger.info('WEBHOOK_SECRETS_KEY unset: no webhook deliveries from this relay');
  const retentionMs = config.OUTBOX_RETENTION_DAYS * 86_400_000;
  const purge = () =>
    purgePublishedEvents(db, retentionMs).then(
      (n) => n && logger.info({ purged: n }, 'published events purged'),
      (err: Error) => logger.warn({ err: err.message }, 'event purge failed'),
    );
  void purge();
  const timer = setInterval(() => void purge(), 600_000);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(timer);
  await relay.stop();
  await webhooks?.stop();
  await nc.drain().catch(() => undefined);
  await metricsServer?.close();
  await db.end();
  return 0;
});
