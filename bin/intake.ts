import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ConfigError, loadConfig, UsageError, type Config } from '../src/config';
import { migratePatiently } from '../src/db/migrate';
import { createPool } from '../src/db/pool';
import { purgeInbox } from '@sagaflow/toolkit/inbox';
import { ensureInboxTopology, inboxBacklog, listDeadLetters, requeueDeadLetter, runJetStreamInbox, type InboxOutcome } from '@sagaflow/toolkit/inbox';
import { orderIntakeHandler, orderIntakeTopology } from '../src/orders/intake';
import { createLogger } from '../src/observability/log';
import type { Checks } from '../src/observability/health';
import { SagaMetrics, serveMetrics, type IntakeOutcome } from '../src/observability/metrics';
import { startRecoveryLoop } from '../src/orders/recovery';
import { clientConnectionOptions, connectPatiently, temporalTargetOrExplain } from '../src/temporal-connect';
import { runMain } from '../src/run-main';
import { dataConverterOf, payloadCodecSetting } from '../src/codec/settings';
import { patiently } from '../src/patiently';

const USAGE = `usage: npm run intake [-- dead-letters | requeue SEQUENCE]

The stream door: order requests from the NATS JetStream stream SAGAFLOW_ORDERS
(subject sagaflow.orders.requested), each processed exactly once: its message ID
(the Nats-Msg-Id header, else "messageId" in the body) is claimed in the inbox in
the same transaction as the order row, the saga starts by the order's workflow
ID, and the message is acked only after that. A message that can never be
processed (not JSON, not an order, its ID reused with another body) goes at once
to the dead-letter stream SAGAFLOW_ORDERS_DLQ with the reason; one that keeps
failing (PostgreSQL or Temporal down) after INTAKE_MAX_DELIVER deliveries. Every
30 s it starts the saga of any order committed a minute ago or more whose saga
never started, as the API's recovery job does.

  (no command)        run the intake until SIGTERM or SIGINT
  dead-letters        list the dead letters: sequence, reason, deliveries, message ID, detail
  requeue SEQUENCE    put dead letter SEQUENCE back on its subject (after a fix)

Needs NATS_URL, DATABASE_URL and TEMPORAL_ADDRESS (\`npm run stack\` prints them).
Settings: INTAKE_MAX_DELIVER (10), INTAKE_MAX_ACK_PENDING (256), INTAKE_CONCURRENCY (8),
INBOX_RETENTION_DAYS (30). With METRICS_PORT set (0: any free port) it serves
/metrics, /healthz and /readyz on METRICS_HOST:METRICS_PORT.`;

const outcomeOf = (o: InboxOutcome): IntakeOutcome =>
  o.kind === 'ack' ? (o.claim === 'new' ? 'started' : 'duplicate') : o.kind === 'retry' ? 'retried' : 'dead_lettered';

function topologyOf(config: Config) {
  return orderIntakeTopology({
    maxDeliver: config.INTAKE_MAX_DELIVER,
    maxAckPending: config.INTAKE_MAX_ACK_PENDING,
    replicas: config.NATS_STREAM_REPLICAS,
  });
}

/** patient: a NATS not up yet is waited for, as PostgreSQL and Temporal are (the intake itself); else it fails at once (the commands). */
async function natsOf(config: Config, patient = false): Promise<NatsConnection> {
  if (!config.NATS_URL) throw new ConfigError([{ variable: 'NATS_URL', message: 'required by the intake (npm run stack prints one)' }]);
  return connect({ servers: config.NATS_URL.split(','), name: 'sagaflow-intake', maxReconnectAttempts: -1, waitOnFirstConnect: patient });
}

runMain(USAGE, async () => {
  const { positionals } = parseArgs({ allowPositionals: true, options: {} });
  const [command, arg, ...extra] = positionals;
  if (extra.length) throw new UsageError(`unexpected arguments: ${extra.join(' ')}`);
  const config = loadConfig();
  if (command === 'dead-letters' || command === 'requeue') {
    const nc = await natsOf(config);
    try {
      if (command === 'dead-letters') {
        for (const d of await listDeadLetters(nc, topologyOf(config))) {
          console.log([d.sequence, d.reason, d.deliveries, d.messageId ?? '-', d.detail].join('\t'));
        }
        return 0;
      }
      const seq = Number(arg);
      if (!Number.isSafeInteger(seq) || seq < 1) throw new UsageError(`requeue: a dead letter's sequence number, not "${arg ?? ''}"`);
      const letter = await requeueDeadLetter(nc, topologyOf(config), seq);
      console.log(`requeued dead letter ${seq} (${letter.reason}) to ${letter.subject}`);
      return 0;
    } finally {
      await nc.close();
    }
  }
  if (command !== undefined) throw new UsageError(`unknown command "${command}"`);

  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required by the intake' }]);
  const payloadCodec = payloadCodecSetting(config);
  const logger = createLogger({ service: 'sagaflow-intake', level: config.LOG_LEVEL });
  const metrics = new SagaMetrics({ processMetrics: true, role: 'intake' });
  let readiness: Checks = { intake: () => Promise.reject(new Error('starting')) };
  // Only when asked: several intakes often share a host with a worker, which takes 9464 by default.
  const metricsServer = process.env.METRICS_PORT
    ? await serveMetrics(metrics, { host: config.METRICS_HOST, port: config.METRICS_PORT, readiness: () => readiness })
    : undefined;
  await migratePatiently(config.DATABASE_URL, { log: (l) => logger.info(l) });
  const db = createPool({ connectionString: config.DATABASE_URL, max: config.DATABASE_POOL_MAX });
  const target = temporalTargetOrExplain();
  const connection = await connectPatiently(() => Connection.connect(clientConnectionOptions(target.connectionOptions)), {
    log: (l) => logger.info(l),
  });
  const temporal = new Client({ connection, namespace: target.namespace, dataConverter: dataConverterOf(payloadCodec) });
  const nc = await natsOf(config, true);
  const topology = topologyOf(config);
  // Connected is not ready: a NATS just restarted (or a cluster electing its leaders) answers
  // JetStream requests with timeouts for a while. Waited for, not a reason to exit.
  const intake = await patiently(
    'NATS JetStream',
    async () => {
      await ensureInboxTopology(nc, topology);
      return runJetStreamInbox({
        nc,
        db,
        topology,
        retentionMs: config.INBOX_RETENTION_DAYS * 86_400_000,
        concurrency: config.INTAKE_CONCURRENCY,
        handler: orderIntakeHandler({ db, temporal, taskQueue: config.TEMPORAL_TASK_QUEUE, source: topology.stream, searchAttributes: config.SAGAFLOW_SEARCH_ATTRIBUTES, workflowType: config.SAGAFLOW_ORDER_SAGA_TYPE }),
        onTopologyLost: (err) => logger.warn({ err: err.message, stream: topology.stream, consumer: topology.consumer }, 'intake stream or consumer missing; creating them again'),
        onOutcome: (o) => {
          metrics.intakeMessages.inc({ outcome: outcomeOf(o) });
          if (o.kind === 'dead-letter') metrics.intakeDeadLetters.inc({ reason: o.reason });
          if (o.kind === 'ack') logger.debug({ sequence: o.sequence, orderId: o.resourceId, claim: o.claim }, 'message processed');
          else if (o.kind === 'retry') logger.warn({ sequence: o.sequence, deliveries: o.deliveries, error: o.error }, 'message to be redelivered');
          else logger.warn({ sequence: o.sequence, deliveries: o.deliveries, reason: o.reason, detail: o.detail }, 'message dead-lettered');
        },
      });
    },
    { log: (l) => logger.info(l) },
  );
  metrics.onScrape(async () => {
    metrics.intakeInFlight.set(intake.inFlight);
    const backlog = await inboxBacklog(nc, topology);
    metrics.intakePending.set(backlog.pending);
    metrics.intakeDeadLetterDepth.set(backlog.deadLetters);
  });
  readiness = {
    database: () => db.query('SELECT 1'),
    nats: () => nc.flush(),
    temporal: () => connection.withDeadline(Date.now() + 1500, () => connection.workflowService.getSystemInfo({})),
  };
  logger.info({ stream: topology.stream, consumer: topology.consumer, nats: config.NATS_URL, metrics: metricsServer?.url ?? 'off (METRICS_PORT unset)' }, 'intake consuming');
  // Inbox records past their retention go in batches, every ten minutes and once at start.
  const purge = () => purgeInbox(db).then((n) => n && logger.info({ purged: n }, 'inbox records purged'), (err: Error) => logger.warn({ err: err.message }, 'inbox purge failed'));
  void purge();
  const timer = setInterval(() => void purge(), 600_000);
  // An order committed whose saga never started (its message dead-lettered after Temporal stayed
  // down, or the intake killed after the commit and the message never redelivered) gets its saga
  // here, as the API's recovery job does for its requests; rows are shared with SKIP LOCKED.
  const recovery = startRecoveryLoop({
    db,
    temporal,
    taskQueue: config.TEMPORAL_TASK_QUEUE,
    olderThanMs: 60_000,
    searchAttributes: config.SAGAFLOW_SEARCH_ATTRIBUTES,
    workflowType: config.SAGAFLOW_ORDER_SAGA_TYPE,
    intervalMs: 30_000,
    onRecovered: (ids) => logger.info({ orderIds: ids }, 'abandoned orders recovered: sagas started'),
    onError: (err) => logger.warn({ err: err.message }, 'order recovery failed; retrying next round'),
  });
  await Promise.race([
    new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    }),
    intake.done,
  ]);
  clearInterval(timer);
  recovery.stop();
  await intake.stop();
  await nc.drain().catch(() => undefined);
  await metricsServer?.close();
  await connection.close();
  await db.end();
  return 0;
});
