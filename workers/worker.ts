import { NativeConnection, Worker, type State, type WorkerOptions, type WorkerPlugin } from '@temporalio/worker';
import { activitiesBySystem, type ActivityDeps } from '../activities';
import type { SagaMetrics } from '../src/observability/metrics';
import { QUEUE_ROLES, queueName, type QueueRole } from '../workflows/order/queues';
import type { ReplayOptions } from '@sagaflow/toolkit/replay';
import { sagaMetricsSinks, stepObserver } from './observability';
import { toolkitBundlerOptions } from './toolkit-source';
import type { DataConverter } from '@temporalio/common';
import { dataConverterFromEnv } from '../src/codec/settings';

export const WORKFLOWS_PATH = require.resolve('../workflows');
/** What the replay gate needs to replay the order saga: its workflow code and the sinks it calls. */
export function orderSagaReplayOptions(): ReplayOptions {
  return { workflowsPath: WORKFLOWS_PATH, bundlerOptions: toolkitBundlerOptions(), sinks: sagaMetricsSinks() };
}

export interface SagaWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  /** The base task queue: the workflow's; activity queues are named after it. */
  taskQueue: string;
  deps: ActivityDeps;
  /** Which queues this process polls; all of them by default. */
  queues?: readonly QueueRole[];
  /** Concurrent activity (or workflow task) slots per queue. */
  concurrency?: Partial<Record<QueueRole, number>>;
  /**
   * At most this many long polls per queue (workflow and activity tasks alike; at least 2, for the
   * sticky queue), through the SDK's poller behavior. Unset: the SDK's default (10 per queue).
   */
  pollers?: number;
  /**
   * Cap on calls to the payment provider per second, for every worker on the same database: the
   * ledger's limiter enforces it in PostgreSQL, wherever the payment step runs.
   */
  paymentsPerSecond?: number;
  /** A prebuilt bundle starts faster; without one the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** How long in-flight activities may run on after shutdown begins. */
  shutdownGraceTime?: WorkerOptions['shutdownGraceTime'];
  /** Off for in-process workers whose owner handles signals. */
  handleSignals?: boolean;
  /** Other activities per system than the order saga's, under the same names (tests that make a step slow or die). */
  activities?: SystemActivities;
  /** Saga, step and dedupe metrics; steps are logged either way. */
  metrics?: SagaMetrics;
  /** Where each saga's ending is logged (`saga ended`, one line per saga). */
  log?: (line: Record<string, unknown>) => void;
  /** E.g. the OpenTelemetry plugin, when tracing is on. */
  plugins?: WorkerPlugin[];
  /**
   * The payload codec's data converter, the same as the clients': by default the one the
   * environment configures (SAGAFLOW_PAYLOAD_KEYS...), so no worker runs without it by omission.
   */
  dataConverter?: DataConverter;
}

/** Several Temporal workers, one per task queue, run and stopped as one. */
export interface SagaWorker {
  readonly workers: { role: QueueRole; taskQueue: string; worker: Worker }[];
  run(): Promise<void>;
  shutdown(): void;
  getState(): State;
}

export type SystemActivities = ReturnType<typeof activitiesBySystem>;

/** The order saga's workers: its workflow code, and its activities on their systems' queues. */
export function createSagaWorker(opts: SagaWorkerOptions): Promise<SagaWorker> {
  return createQueueWorkers(opts, WORKFLOWS_PATH);
}

/**
 * The workers of createSagaWorker running the workflow code at `workflowsPath` (unless given a
 * bundle): the one place the queues' workers are put together, for the order saga and for the
 * benchmark's comparison sagas (dev/bench/workers.ts).
 */
export async function createQueueWorkers(opts: SagaWorkerOptions, workflowsPath: string): Promise<SagaWorker> {
  const { metrics } = opts;
  const systems = opts.activities ?? activitiesBySystem({
    ...opts.deps,
    ...(opts.paymentsPerSecond !== undefined ? { paymentsPerSecond: opts.paymentsPerSecond } : {}),
    ledgerHooks: {
      onReplay: (step) => metrics?.idempotentReplays.inc({ layer: 'ledger', step }),
      ...opts.deps.ledgerHooks,
    },
  });
  const roles = opts.queues ?? QUEUE_ROLES;
  // The SDK reads its poller behavior, not the maxConcurrent…TaskPolls options.
  const pollers = opts.pollers === undefined ? {} : {
    workflowTaskPollerBehavior: { type: 'simple-maximum' as const, maximum: opts.pollers },
    activityTaskPollerBehavior: { type: 'simple-maximum' as const, maximum: opts.pollers },
  };
  const common = {
    ...pollers,
    connection: opts.connection,
    namespace: opts.namespace,
    shutdownGraceTime: opts.shutdownGraceTime ?? '10s',
    shutdownSignals: opts.handleSignals === false ? [] : undefined,
    interceptors: { activity: [stepObserver(metrics)] },
    sinks: sagaMetricsSinks(metrics, opts.log),
    plugins: opts.plugins,
    dataConverter: opts.dataConverter ?? dataConverterFromEnv(),
  };
  const workers = await Promise.all(
    roles.map(async (role) => {
      const taskQueue = queueName(opts.taskQueue, role);
      const concurrency = opts.concurrency?.[role];
      const worker =
        role === 'workflows'
          ? await Worker.create({
              ...common,
              taskQueue,
              ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath, bundlerOptions: toolkitBundlerOptions() }),
              // Local activities run here: the database-only steps of every saga, and every step of
              // an orderSagaV2. This worker takes no remote ones.
              activities: { ...systems.orders, ...systems.inventory, ...systems.payments, ...systems.shipping },
              enableNonLocalActivities: false,
              maxConcurrentWorkflowTaskExecutions: concurrency ?? 40,
            })
          : await Worker.create({
              ...common,
              taskQueue,
              activities: systems[role],
              maxConcurrentActivityTaskExecutions: concurrency ?? 50,
            });
      return { role, taskQueue, worker };
    }),
  );
  return {
    workers,
    async run() {
      await Promise.all(workers.map((w) => w.worker.run()));
    },
    shutdown() {
      for (const { worker } of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
    },
    getState() {
      const states = workers.map((w) => w.worker.getState());
      return states.find((s) => s !== 'STOPPED') ?? 'STOPPED';
    },
  };
}
