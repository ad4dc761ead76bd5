import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { Stack } from '../stack';
import { createApiClient } from '../../src/api/auth';
import { startApi, type RunningApi } from '../../src/api/server';
import { startOrderSaga } from '../../src/orders/start';
import { createQueueWorkers, createSagaWorker, type SagaWorker, type SagaWorkerOptions } from '../../workers/worker';
import type { OrderInput } from '../../workflows/order/types';
import { activitiesBySystem } from '../../activities';
import { noopActivities, passThroughLedger } from './activities';
import { startDbosVariant } from './dbos';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ensureInboxTopology, runJetStreamInbox, type RunningInbox } from '@sagaflow/toolkit/inbox';
import { orderIntakeHandler, orderIntakeTopology } from '../../src/orders/intake';
import { orderWorkflowId } from '../../workflows/order/ids';
import { dataConverterFromEnv } from '../../src/codec/settings';

/** The comparison sagas (./workflows.ts: naive, no-ledger, floor) on the order saga's queues, as its workers run them. */
function createSampleSagaWorker(opts: SagaWorkerOptions): Promise<SagaWorker> {
  return createQueueWorkers(opts, require.resolve('./workflows'));
}

/**
 * The variants, each on task queues of its own, driven in turn within each round:
 * - sagaflow: the order saga as it runs in production (saga helper, search
 *   attributes, the ledger, the provider and carrier over HTTP);
 * - sagaflow-http: the same, started through POST /orders?wait=30s;
 * - sagaflow-stream: the same, started by an order message on a JetStream stream of
 *   the bench's own through the intake (inbox claim, order row, saga start, ack),
 *   timed from the publish to the saga's result;
 * - naive: a saga as the Temporal samples write one (every activity remote on
 *   its system's queue) over the same activities writing the same rows, with
 *   no ledger (no record, no fingerprint, no tombstone);
 * - no-ledger: the naive saga with the order saga's kinds of activity (the
 *   database-only steps local): sagaflow minus its ledger, saga helper and
 *   search attributes, so sagaflow / no-ledger is what exactly-once costs;
 * - floor: no-ledger's shape with no-op activities: what Temporal itself
 *   costs for the saga's six activities;
 * - dbos: the same six steps' code as DBOS Transact steps of one workflow (./dbos.ts).
 */
export const VARIANTS = ['sagaflow', 'sagaflow-http', 'sagaflow-stream', 'naive', 'no-ledger', 'floor', 'dbos'] as const;
export type Variant = (typeof VARIANTS)[number];

export interface BenchOptions {
  sagas: number;
  inFlight: number;
  rounds: number;
  variants: Variant[];
  /** Long polls per queue in every variant's workers; the workers' default if unset. */
  pollers?: number;
  log: (m: string) => void;
}

export interface RoundResult {
  round: number;
  variant: Variant;
  sagas: number;
  failed: number;
  sagasPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
}

export interface Ratio {
  name: string;
  median: number;
  min: number;
  max: number;
}

export interface BenchReport {
  options: Omit<BenchOptions, 'log'>;
  rounds: RoundResult[];
  /** Per variant: the median over rounds of each figure. */
  summary: Record<string, { sagasPerSecond: number; p50Ms: number; p95Ms: number; p99Ms: number }>;
  /** Per-round ratios (same round, so the same machine noise), median and min–max over rounds. */
  ratios: Ratio[];
}

export async function runBench(stack: Stack, opts: BenchOptions): Promise<BenchReport> {
  const run = randomBytes(3).toString('hex');
  const nativeConnection = await NativeConnection.connect({ address: stack.temporal.address });
  const connection = await Connection.connect({ address: stack.temporal.address });
  const dataConverter = stack.dataConverter ?? dataConverterFromEnv();
  const client = new Client({ connection, namespace: stack.temporal.namespace, dataConverter });
  const deps = { db: stack.db, paymentProviderUrl: stack.paymentProviderUrl, carrierUrl: stack.carrierUrl, providerTimeoutMs: 5000 };
  const viaSagaflow = (v: Variant) => v === 'sagaflow-http' || v === 'sagaflow-stream';
  const queue = (v: Variant) => `bench-${viaSagaflow(v) ? 'sagaflow' : v}-${run}`;

  const workers: SagaWorker[] = [];
  const running: Promise<void>[] = [];
  const started = async (w: Promise<SagaWorker>) => {
    const worker = await w;
    workers.push(worker);
    running.push(worker.run());
  };
  const common = { connection: nativeConnection, namespace: stack.temporal.namespace, handleSignals: false, pollers: opts.pollers, dataConverter };
  const wants = new Set(opts.variants.map((v) => (viaSagaflow(v) ? 'sagaflow' : v)));
  if (wants.has('sagaflow')) await started(createSagaWorker({ ...common, taskQueue: queue('sagaflow'), deps }));
  for (const v of ['naive', 'no-ledger'] as const) {
    if (!wants.has(v)) continue;
    await started(createSampleSagaWorker({ ...common, taskQueue: queue(v), deps, activities: activitiesBySystem(deps, passThroughLedger(stack.db)) }));
  }
  if (wants.has('floor')) {
    await started(createSampleSagaWorker({ ...common, taskQueue: queue('floor'), deps, activities: noopActivities() }));
  }
  let dbos: Awaited<ReturnType<typeof startDbosVariant>> | undefined;
  if (wants.has('dbos')) {
    const url = new URL(stack.databaseUrl);
    url.pathname = `/dbos_bench_${run}`;
    dbos = await startDbosVariant(url.toString(), deps);
  }
  let api: RunningApi | undefined;
  let apiKey = '';
  if (opts.variants.includes('sagaflow-http')) {
    api = await startApi({ db: stack.db, temporal: client, taskQueue: queue('sagaflow'), log: () => undefined, recoveryIntervalMs: 0 });
    apiKey = (await createApiClient(stack.db, `bench-${run}`)).apiKey;
  }

  // The stream door: the intake in this process, on streams of the bench's own; each message's
  // outcome (the order it made) settles the saga waiting for it.
  let nc: NatsConnection | undefined;
  let intake: RunningInbox | undefined;
  const streamTopology = orderIntakeTopology({
    stream: `BENCH_ORDERS_${run}`,
    subjects: [`bench.${run}.orders`],
    consumer: `bench-${run}`,
    deadLetterStream: `BENCH_ORDERS_DLQ_${run}`,
    deadLetterSubject: `bench.${run}.dead`,
  });
  const awaiting = new Map<string, (orderId: string | Error) => void>();
  if (opts.variants.includes('sagaflow-stream')) {
    nc = await connect({ servers: stack.natsUrl.split(',') });
    await ensureInboxTopology(nc, streamTopology);
    intake = await runJetStreamInbox({
      nc,
      db: stack.db,
      topology: streamTopology,
      retentionMs: 86_400_000,
      concurrency: opts.inFlight,
      handler: orderIntakeHandler({ db: stack.db, temporal: client, taskQueue: queue('sagaflow'), source: streamTopology.stream }),
      onOutcome: (o) => {
        if (!o.messageId || o.kind === 'retry') return;
        awaiting.get(o.messageId)?.(o.kind === 'ack' ? o.resourceId : new Error(`${o.messageId}: dead-lettered (${o.reason}: ${o.detail})`));
      },
    });
  }

  const sku = `bench-${run}`;
  const total = opts.sagas * opts.rounds * opts.variants.length + 10;
  await stack.db.query(`INSERT INTO inventory (sku, on_hand) VALUES ($1, $2)`, [sku, total]);
  const order = (id: string): OrderInput => ({
    orderId: id,
    customerId: 'bench',
    items: [{ sku, quantity: 1 }],
    amount: { amountMinor: 1_000, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Bench', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  });

  /** One saga from start to its result, in ms; throws if it did not complete. */
  const oneSaga = async (variant: Variant, n: string): Promise<number> => {
    const t0 = performance.now();
    const id = `${variant}-${run}-${n}`;
    if (variant === 'sagaflow') {
      const result = await (await startOrderSaga(client, order(id), queue(variant))).result();
      if (result.status !== 'completed') throw new Error(`${id}: ${result.status}`);
    } else if (variant === 'sagaflow-http') {
      const { orderId: _drop, ...body } = order(id);
      const res = await fetch(`${api!.url}/orders?wait=30s`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'idempotency-key': id, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const view = (await res.json()) as { saga?: { status?: string } };
      if (res.status !== 201 || view.saga?.status !== 'completed') throw new Error(`${id}: ${res.status} ${JSON.stringify(view)}`);
    } else if (variant === 'sagaflow-stream') {
      const { orderId: _drop, ...body } = order(id);
      const made = new Promise<string | Error>((resolve) => awaiting.set(id, resolve));
      await jetstream(nc!).publish(streamTopology.subjects[0]!, JSON.stringify(body), { msgID: id });
      const orderId = await made;
      awaiting.delete(id);
      if (orderId instanceof Error) throw orderId;
      const result = await client.workflow.getHandle(orderWorkflowId(orderId)).result();
      if ((result as { status: string }).status !== 'completed') throw new Error(`${id}: ${(result as { status: string }).status}`);
    } else if (variant === 'dbos') {
      await dbos!.run(order(id), `order-${id}`);
    } else {
      const workflow = variant === 'naive' ? 'naiveSaga' : 'sampleSaga';
      const result = await client.workflow.execute(workflow, { workflowId: `order-${id}`, taskQueue: queue(variant), args: [order(id)] });
      if ((result as { status: string }).status !== 'completed') throw new Error(`${id}: compensated`);
    }
    return performance.now() - t0;
  };

  const rounds: RoundResult[] = [];
  try {
    // A short warm-up per variant: bundles, connections and caches are not what is measured.
    for (const v of opts.variants) await Promise.all([0, 1].map((i) => oneSaga(v, `warm${i}`)));
    for (let round = 1; round <= opts.rounds; round++) {
      // Interleaved, and in a rotated order each round, so drift in the machine's load hits every variant alike.
      const order_ = opts.variants.map((_, i) => opts.variants[(i + round - 1) % opts.variants.length]!);
      for (const variant of order_) {
        const latencies: number[] = [];
        let failed = 0;
        let next = 0;
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: Math.min(opts.inFlight, opts.sagas) }, async () => {
            while (next < opts.sagas) {
              const n = next++;
              try {
                latencies.push(await oneSaga(variant, `r${round}-${n}`));
              } catch (err) {
                failed += 1;
                opts.log(`${variant}: ${(err as Error).message}`);
              }
            }
          }),
        );
        const seconds = (performance.now() - t0) / 1000;
        const r: RoundResult = {
          round,
          variant,
          sagas: latencies.length,
          failed,
          sagasPerSecond: latencies.length / seconds,
          p50Ms: percentile(latencies, 50),
          p95Ms: percentile(latencies, 95),
          p99Ms: percentile(latencies, 99),
        };
        rounds.push(r);
        opts.log(`round ${round} ${variant}: ${r.sagasPerSecond.toFixed(2)} sagas/s, p50 ${r.p50Ms.toFixed(0)} ms${failed ? `, ${failed} failed` : ''}`);
      }
    }
  } finally {
    await intake?.stop();
    if (nc) {
      const jsm = await jetstream(nc).jetstreamManager();
      for (const s of [streamTopology.stream, streamTopology.deadLetterStream]) await jsm.streams.delete(s).catch(() => undefined);
      await nc.close();
    }
    await api?.close();
    await dbos?.stop();
    for (const w of workers) w.shutdown();
    await Promise.allSettled(running);
    await nativeConnection.close();
    await connection.close();
  }
  return { options: { sagas: opts.sagas, inFlight: opts.inFlight, rounds: opts.rounds, variants: opts.variants, pollers: opts.pollers }, rounds, ...summarize(rounds, opts.variants) };
}

function summarize(rounds: RoundResult[], variants: Variant[]): Pick<BenchReport, 'summary' | 'ratios'> {
  const summary: BenchReport['summary'] = {};
  for (const v of variants) {
    const rs = rounds.filter((r) => r.variant === v);
    summary[v] = {
      sagasPerSecond: median(rs.map((r) => r.sagasPerSecond)),
      p50Ms: median(rs.map((r) => r.p50Ms)),
      p95Ms: median(rs.map((r) => r.p95Ms)),
      p99Ms: median(rs.map((r) => r.p99Ms)),
    };
  }
  const ratios: Ratio[] = [];
  const ratio = (name: string, a: Variant, b: Variant, of: (r: RoundResult) => number, invert = false) => {
    if (!variants.includes(a) || !variants.includes(b)) return;
    const per = [...new Set(rounds.map((r) => r.round))].flatMap((round) => {
      const x = rounds.find((r) => r.round === round && r.variant === a);
      const y = rounds.find((r) => r.round === round && r.variant === b);
      return x && y ? [invert ? of(y) / of(x) : of(x) / of(y)] : [];
    });
    if (per.length) ratios.push({ name, median: median(per), min: Math.min(...per), max: Math.max(...per) });
  };
  const tput = (r: RoundResult) => r.sagasPerSecond;
  const p50 = (r: RoundResult) => r.p50Ms;
  ratio('sagaflow / floor, throughput', 'sagaflow', 'floor', tput);
  ratio('sagaflow / floor, p50 speed (floor p50 / sagaflow p50)', 'sagaflow', 'floor', p50, true);
  ratio('sagaflow / naive, throughput', 'sagaflow', 'naive', tput);
  ratio('sagaflow / naive, p50 speed (naive p50 / sagaflow p50)', 'sagaflow', 'naive', p50, true);
  ratio('sagaflow / no-ledger, throughput (what exactly-once costs)', 'sagaflow', 'no-ledger', tput);
  ratio('no-ledger / floor, throughput (what the steps\' own work costs)', 'no-ledger', 'floor', tput);
  ratio('sagaflow-http / sagaflow, throughput', 'sagaflow-http', 'sagaflow', tput);
  ratio('sagaflow-stream / sagaflow-http, throughput (the stream door against the HTTP door)', 'sagaflow-stream', 'sagaflow-http', tput);
  ratio('sagaflow / DBOS, throughput', 'sagaflow', 'dbos', tput);
  ratio('sagaflow / DBOS, p50 speed (DBOS p50 / sagaflow p50)', 'sagaflow', 'dbos', p50, true);
  return { summary, ratios };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function median(values: number[]): number {
  return percentile(values, 50);
}

export function formatReport(r: BenchReport): string {
  const lines = [
    `${r.options.sagas} sagas per variant and round, ${r.options.inFlight} in flight, ${r.options.rounds} rounds${r.options.pollers ? `, ${r.options.pollers} pollers per queue` : ''} (medians over rounds)`,
    '',
    '| variant | sagas/s | p50 ms | p95 ms | p99 ms |',
    '|---|---|---|---|---|',
    ...Object.entries(r.summary).map(
      ([v, s]) => `| ${v} | ${s.sagasPerSecond.toFixed(2)} | ${s.p50Ms.toFixed(0)} | ${s.p95Ms.toFixed(0)} | ${s.p99Ms.toFixed(0)} |`,
    ),
    '',
    '| ratio | median | min–max over rounds |',
    '|---|---|---|',
    ...r.ratios.map((x) => `| ${x.name} | ${x.median.toFixed(2)} | ${x.min.toFixed(2)}–${x.max.toFixed(2)} |`),
  ];
  return lines.join('\n');
}
