import { parseArgs } from 'node:util';
import { UsageError, type Config } from '../src/config';
import { QUEUE_ROLES, type QueueRole } from '../workflows/order/queues';

export interface WorkerProcessOptions {
  queues: QueueRole[];
  concurrency: Partial<Record<QueueRole, number>>;
  /** Long polls per queue; the SDK's own default when unset. */
  pollers?: number;
  paymentsPerSecond?: number;
  shutdownGraceMs: number;
  metricsPort: number;
}

const isRole = (s: string): s is QueueRole => (QUEUE_ROLES as readonly string[]).includes(s);

/** `--queues a,b --concurrency payments=20 --pollers 4 --payments-per-second 50 --shutdown-grace 10000`; flags win over env. */
export function workerOptions(argv: string[], config: Config): WorkerProcessOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      queues: { type: 'string' },
      concurrency: { type: 'string' },
      pollers: { type: 'string' },
      'payments-per-second': { type: 'string' },
      'shutdown-grace': { type: 'string' },
      'metrics-port': { type: 'string' },
    },
  });
  const queuesSpec = values.queues ?? config.SAGAFLOW_WORKER_QUEUES;
  const queues = queuesSpec ? queuesSpec.split(',').map((q) => q.trim()) : [...QUEUE_ROLES];
  const bad = queues.filter((q) => !isRole(q));
  if (bad.length || queues.length === 0) throw new UsageError(`--queues: unknown ${bad.join(', ')}; use ${QUEUE_ROLES.join(', ')}`);
  const roles = queues as QueueRole[];

  const concurrency: Partial<Record<QueueRole, number>> = {};
  const spec = values.concurrency ?? config.SAGAFLOW_WORKER_CONCURRENCY;
  if (spec) {
    if (/^\d+$/.test(spec)) {
      if (Number(spec) < 1) throw new UsageError('--concurrency must be at least 1');
      for (const r of roles) concurrency[r] = Number(spec);
    }
    else
      for (const pair of spec.split(',')) {
        const [role, n] = pair.split('=');
        if (!role || !isRole(role) || !n || !/^\d+$/.test(n) || Number(n) < 1) throw new UsageError(`--concurrency: bad "${pair}"`);
        concurrency[role] = Number(n);
      }
  }
  const pollerSpec = values.pollers ?? config.SAGAFLOW_WORKER_POLLERS;
  const pollers = pollerSpec === undefined ? undefined : Number(pollerSpec);
  if (pollers !== undefined && (!Number.isInteger(pollers) || pollers < 2 || pollers > 100)) {
    throw new UsageError('--pollers must be a whole number from 2 to 100');
  }
  const pps = values['payments-per-second'] ?? config.PAYMENTS_PER_SECOND;
  const paymentsPerSecond = pps === undefined ? undefined : Number(pps);
  if (paymentsPerSecond !== undefined && !(paymentsPerSecond > 0)) throw new UsageError('--payments-per-second must be positive');
  const grace = Number(values['shutdown-grace'] ?? config.SHUTDOWN_GRACE_MS);
  if (!Number.isInteger(grace) || grace < 0) throw new UsageError('--shutdown-grace must be milliseconds');
  const metricsPort = Number(values['metrics-port'] ?? config.METRICS_PORT);
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new UsageError('--metrics-port must be a port');
  return { queues: roles, concurrency, pollers, paymentsPerSecond, shutdownGraceMs: grace, metricsPort };
}
