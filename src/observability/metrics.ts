import http from 'node:http';
import { checkReadiness, type Checks } from './health';
import { listen } from '../http';
import type { DeadLetterReason } from '@sagaflow/toolkit/inbox';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * sagaflow's own Prometheus metrics. One instance per process; the worker, the
 * API, the intake and the relay each serve theirs on /metrics (the worker appends
 * Temporal's runtime metrics, prefixed temporal_). docs/operations.md lists every one.
 */
export type MetricsRole = 'worker' | 'api' | 'intake' | 'relay' | 'all';

/** What became of one delivery of an intake message. */
export type IntakeOutcome = 'started' | 'duplicate' | 'retried' | 'dead_lettered';
/** One webhook attempt: a 2xx, another HTTP answer, or none (refused address, connection error, timeout). */
export type WebhookResult = 'delivered' | 'rejected' | 'unreachable';

export class SagaMetrics {
  readonly registry = new Registry();
  readonly sagasStarted: Counter;
  readonly sagasCompleted: Counter;
  readonly sagasCompensated: Counter<'reason'>;
  readonly sagasFailed: Counter;
  readonly compensationFailures: Counter<'step'>;
  readonly idempotentReplays: Counter<'layer' | 'step'>;
  readonly ordersRecovered: Counter;
  readonly throttledRequests: Counter<'reason'>;
  readonly ledgerRowsPurged: Counter;
  readonly stepDuration: Histogram<'step' | 'outcome'>;
  readonly httpRequests: Histogram<'method' | 'route' | 'status'>;
  readonly intakeMessages: Counter<'outcome'>;
  readonly intakeDeadLetters: Counter<'reason'>;
  readonly intakeInFlight: Gauge;
  readonly intakePending: Gauge;
  readonly intakeDeadLetterDepth: Gauge;
  readonly eventsPublished: Counter<'type'>;
  readonly relayFailures: Counter;
  readonly relayUnpublished: Gauge;
  readonly relayOldestAge: Gauge;
  readonly webhookAttempts: Counter<'result'>;
  readonly webhookDeliveriesFailed: Counter;
  readonly webhookEndpointsDisabled: Counter;
  readonly webhookPending: Gauge;
  readonly webhookOldestPendingAge: Gauge;
  readonly webhookDisabledEndpoints: Gauge;
  private readonly probes: (() => Promise<void>)[] = [];

  /**
   * `role` says which metrics this process exports: a worker's sagas and steps,
   * the API's requests and recoveries, the intake's messages and dead letters, the
   * relay's events and webhooks. A metric of another role still accepts updates
   * but is not exported, so no process shows counters that stay 0.
   */
  constructor(opts: { processMetrics?: boolean; role?: MetricsRole } = {}) {
    const role = opts.role ?? 'all';
    const on = (...roles: MetricsRole[]) => (role === 'all' || roles.includes(role) ? [this.registry] : []);
    this.sagasStarted = new Counter({
      name: 'sagaflow_sagas_started_total',
      help: 'Sagas that began executing (first run, not replays)',
      registers: on('worker'),
    });
    this.sagasCompleted = new Counter({
      name: 'sagaflow_sagas_completed_total',
      help: 'Sagas that reached the end of their steps',
      registers: on('worker'),
    });
    this.sagasCompensated = new Counter({
      name: 'sagaflow_sagas_compensated_total',
      help: 'Sagas that were undone, by reason: failure (a step failed for good) or cancel (the customer cancelled)',
      labelNames: ['reason'] as const,
      registers: on('worker'),
    });
    this.sagasFailed = new Counter({
      name: 'sagaflow_sagas_failed_total',
      help: 'Sagas whose workflow failed: a compensation failed for good, or a bug in the saga definition',
      registers: on('worker'),
    });
    this.compensationFailures = new Counter({
      name: 'sagaflow_compensation_failures_total',
      help: 'Failed rounds of a compensation (retried until it succeeds), by step',
      labelNames: ['step'] as const,
      registers: on('worker'),
    });
    this.idempotentReplays = new Counter({
      name: 'sagaflow_idempotent_replays_total',
      help: 'Duplicate executions answered from a record instead of applied again, by layer (ledger, http) and step',
      labelNames: ['layer', 'step'] as const,
      registers: on('worker', 'api'),
    });
    this.ordersRecovered = new Counter({
      name: 'sagaflow_orders_recovered_total',
      help: 'Orders whose request died between committing the order and starting its saga, whose saga the recovery job started',
      registers: on('api'),
    });
    this.throttledRequests = new Counter({
      name: 'sagaflow_api_throttled_requests_total',
      help: 'API requests answered 429, by reason: rate_limit (the API client is over API_RATE_LIMIT_PER_SECOND) or auth_failures (its address sent too many unknown keys)',
      labelNames: ['reason'] as const,
      registers: on('api'),
    });
    this.ledgerRowsPurged = new Counter({
      name: 'sagaflow_ledger_rows_purged_total',
      help: 'step_ledger rows deleted by the retention job (sagas with no row written for LEDGER_RETENTION_DAYS)',
      registers: on('worker'),
    });
    this.stepDuration = new Histogram({
      name: 'sagaflow_step_duration_seconds',
      help: 'Duration of one activity attempt, by step (activity type) and outcome',
      labelNames: ['step', 'outcome'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: on('worker'),
    });
    this.httpRequests = new Histogram({
      name: 'sagaflow_http_request_duration_seconds',
      help: 'API requests by method, route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: on('api'),
    });
    this.intakeMessages = new Counter({
      name: 'sagaflow_intake_messages_total',
      help: 'Deliveries of order messages by outcome: started (a new order, its saga started), duplicate (processed before, acked again), retried (failed, redelivered later), dead_lettered',
      labelNames: ['outcome'] as const,
      registers: on('intake'),
    });
    this.intakeDeadLetters = new Counter({
      name: 'sagaflow_intake_dead_letters_total',
      help: 'Order messages written to the dead-letter stream, by reason: invalid, unstorable, conflict, exhausted',
      labelNames: ['reason'] as const,
      registers: on('intake'),
    });
    this.intakeInFlight = new Gauge({
      name: 'sagaflow_intake_in_flight_messages',
      help: 'Order messages this intake process is processing now',
      registers: on('intake'),
    });
    this.intakePending = new Gauge({
      name: 'sagaflow_intake_pending_messages',
      help: "Order messages the intake's consumer has not settled: not yet delivered, or delivered and not yet acked (read from JetStream at scrape)",
      registers: on('intake'),
    });
    this.intakeDeadLetterDepth = new Gauge({
      name: 'sagaflow_intake_dead_letter_messages',
      help: 'Messages held in the dead-letter stream (read from JetStream at scrape); requeue or fix them',
      registers: on('intake'),
    });
    this.eventsPublished = new Counter({
      name: 'sagaflow_relay_events_published_total',
      help: 'Order events the relay published to JetStream and marked published, by type',
      labelNames: ['type'] as const,
      registers: on('relay'),
    });
    this.relayFailures = new Counter({
      name: 'sagaflow_relay_publish_failures_total',
      help: 'Relay rounds that failed (PostgreSQL or NATS unreachable, a publish not acknowledged); nothing was marked, retried after a second',
      registers: on('relay'),
    });
    this.relayUnpublished = new Gauge({
      name: 'sagaflow_relay_unpublished_events',
      help: 'Order events written and not yet published (read from PostgreSQL at scrape)',
      registers: on('relay'),
    });
    this.relayOldestAge = new Gauge({
      name: 'sagaflow_relay_oldest_unpublished_age_seconds',
      help: 'Age of the oldest order event not yet published, 0 if none (read from PostgreSQL at scrape)',
      registers: on('relay'),
    });
    this.webhookAttempts = new Counter({
      name: 'sagaflow_webhook_attempts_total',
      help: 'Webhook delivery attempts by result: delivered (2xx), rejected (another HTTP status), unreachable (no answer, refused address, timeout)',
      labelNames: ['result'] as const,
      registers: on('relay'),
    });
    this.webhookDeliveriesFailed = new Counter({
      name: 'sagaflow_webhook_deliveries_failed_total',
      help: 'Webhook deliveries that failed for good: their last retry failed (the client can replay them)',
      registers: on('relay'),
    });
    this.webhookEndpointsDisabled = new Counter({
      name: 'sagaflow_webhook_endpoints_disabled_total',
      help: 'Webhook endpoints disabled after too many consecutive failed attempts',
      registers: on('relay'),
    });
    this.webhookPending = new Gauge({
      name: 'sagaflow_webhook_pending_deliveries',
      help: 'Webhook deliveries pending to enabled endpoints, retries waiting included (read from PostgreSQL at scrape)',
      registers: on('relay'),
    });
    this.webhookOldestPendingAge = new Gauge({
      name: 'sagaflow_webhook_oldest_pending_age_seconds',
      help: 'Age of the oldest webhook delivery pending to an enabled endpoint, 0 if none (read from PostgreSQL at scrape)',
      registers: on('relay'),
    });
    this.webhookDisabledEndpoints = new Gauge({
      name: 'sagaflow_webhook_disabled_endpoints',
      help: 'Webhook endpoints disabled now and not deleted (read from PostgreSQL at scrape)',
      registers: on('relay'),
    });
    // Every label value from the start, at 0: a rate over a series that does not exist yet is
    // no rate at all, and an alert comparing against it would never see the first one.
    for (const outcome of ['started', 'duplicate', 'retried', 'dead_lettered'] satisfies IntakeOutcome[]) this.intakeMessages.inc({ outcome }, 0);
    for (const reason of ['invalid', 'unstorable', 'conflict', 'exhausted'] satisfies DeadLetterReason[]) this.intakeDeadLetters.inc({ reason }, 0);
    for (const result of ['delivered', 'rejected', 'unreachable'] satisfies WebhookResult[]) this.webhookAttempts.inc({ result }, 0);
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'sagaflow_' });
  }

  /**
   * Runs `probe` before every scrape, to set gauges read from elsewhere (a stream's
   * depth, a table's backlog). A probe that fails or takes over 2 s leaves its gauges
   * at their last value: the scrape itself never fails or hangs for it.
   */
  onScrape(probe: () => Promise<void>): void {
    this.probes.push(probe);
  }

  /** Our metrics, followed by another exporter's text (Temporal Core's), if given. */
  async text(extraUrl?: string): Promise<string> {
    await Promise.all(this.probes.map((probe) => within(probe(), 2000).catch(() => undefined)));
    const own = withoutTotalGauges(await this.registry.metrics());
    if (!extraUrl) return own;
    const extra = await fetch(extraUrl, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.text())
      .catch(() => '');
    return `${own}\n${extra}`;
  }
}

/** `work`, or a rejection once `ms` passed without its answer. */
export function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  // The loser of the race may still fail later: that must not be an unhandled rejection.
  work.catch(() => undefined);
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Drops gauges named like counters (`…_total`): Node's default metrics include
 * `nodejs_active_handles_total` and its kin, sums of the by-type gauges exported
 * beside them, which Prometheus's naming rules (promtool check metrics) refuse.
 */
function withoutTotalGauges(text: string): string {
  const bad = new Set([...text.matchAll(/^# TYPE (\S+_total) gauge$/gm)].map((m) => m[1]!));
  if (bad.size === 0) return text;
  return text
    .split('\n')
    .filter((line) => {
      const name = line.startsWith('# ') ? line.split(' ')[2] : line.split(/[{ ]/)[0];
      return !bad.has(name ?? '');
    })
    .join('\n');
}

export async function serveMetrics(
  metrics: SagaMetrics,
  opts: { host?: string; port: number; extraUrl?: string; readiness?: Checks | (() => Checks); portSetting?: string },
): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    const json = (status: number, body: unknown) =>
      res.writeHead(status, { 'Content-Type': 'application/json' }).end(req.method === 'HEAD' ? undefined : JSON.stringify(body));
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    // Liveness: the process answers. Readiness: it can do its work (its checks all pass).
    if (path === '/healthz') {
      json(200, { status: 'ok' });
      return;
    }
    if (path === '/readyz') {
      checkReadiness((typeof opts.readiness === 'function' ? opts.readiness() : opts.readiness) ?? {}).then(
        (r) => json(r.ready ? 200 : 503, { status: r.ready ? 'ready' : 'not ready', checks: r.checks }),
        (err: Error) => json(503, { status: 'not ready', error: err.message }),
      );
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    metrics.text(opts.extraUrl).then(
      (body) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(body),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  // A port that cannot be bound is a start-up error naming the address and the setting, not an 'error' event.
  const listening = await listen(server, opts.port, opts.host ?? '127.0.0.1', opts.portSetting ?? 'METRICS_PORT');
  return { url: `${listening.url}/metrics`, close: listening.close };
}
