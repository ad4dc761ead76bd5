import http from 'node:http';
import { checkReadiness, type Checks } from './health';
import type { AddressInfo } from 'node:net';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * sagaflow's own Prometheus metrics. One instance per process; the worker and
 * the API each serve theirs on /metrics (the worker appends Temporal's runtime
 * metrics, prefixed temporal_). docs/operations.md lists every one.
 */
export type MetricsRole = 'worker' | 'api' | 'all';

export class SagaMetrics {
  readonly registry = new Registry();
  readonly sagasStarted: Counter;
  readonly sagasCompleted: Counter;
  readonly sagasCompensated: Counter<'reason'>;
  readonly sagasFailed: Counter;
  readonly compensationFailures: Counter<'step'>;
  readonly idempotentReplays: Counter<'layer' | 'step'>;
  readonly ordersRecovered: Counter;
  readonly ledgerRowsPurged: Counter;
  readonly stepDuration: Histogram<'step' | 'outcome'>;
  readonly httpRequests: Histogram<'method' | 'route' | 'status'>;

  /**
   * `role` says which metrics this process exports: a worker's sagas and steps,
   * the API's requests and recoveries. A metric of the other role still accepts
   * updates but is not exported, so no process shows counters that stay 0.
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
    if (opts.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'sagaflow_process_' });
  }

  /** Our metrics, followed by another exporter's text (Temporal Core's), if given. */
  async text(extraUrl?: string): Promise<string> {
    const own = withoutTotalGauges(await this.registry.metrics());
    if (!extraUrl) return own;
    const extra = await fetch(extraUrl, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.text())
      .catch(() => '');
    return `${own}\n${extra}`;
  }
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
  opts: { host?: string; port: number; extraUrl?: string; readiness?: Checks | (() => Checks) },
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
  await new Promise<void>((resolve) => server.listen(opts.port, opts.host ?? '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}/metrics`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
