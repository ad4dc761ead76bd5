import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { strictPayloadConverterPath } from '@sagaflow/toolkit/converter';
import type { Stack } from '../stack';
import { createApiClient } from '../../src/api/auth';
import { startApi, type RunningApi } from '../../src/api/server';
import { startOrderSaga } from '../../src/orders/start';
import { freePort } from '../../src/ports';
import { prebuiltBundle } from '../../workers/bundle';
import { WORKFLOWS_PATH } from '../../workers/worker';
import { toolkitBundlerOptions } from '../../workers/toolkit-source';
import type { OrderInput } from '../../workflows/order/types';
import { jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { ensureInboxTopology, runJetStreamInbox, type RunningInbox } from '@sagaflow/toolkit/inbox';
import { orderIntakeHandler, orderIntakeTopology } from '../../src/orders/intake';
import { orderWorkflowId } from '../../workflows/order/ids';
import { dataConverterFromEnv } from '../../src/codec/settings';
import { findTemporalServerPid, groupTicks, pidsNamed, sampleCpu, ticksPerSecond, type CpuSample } from './cpu';
import { spawnEntry, spawnSagaProcess, untilReady, type BenchProcess, type SagaProcess } from './processes';
import { restateAvailable, startRestate, type RunningRestate } from './restate';

/**
 * The variants, each with workers of its own in OS processes of their own (as deployed), driven
 * in turn within each round by this process (the driver: a Temporal client that starts sagas and
 * awaits their results, with the simulated payment provider and carrier the stack runs here):
 * - sagaflow: the order saga as production starts it (startOrderSaga, its current workflow type),
 *   run by the real worker entry point (bin/worker.ts);
 * - sagaflow-v1: the same, started as the earlier workflow type (orderSaga), on a worker of its own;
 * - sagaflow-eager: the same, started with eager workflow start from a process that also runs the
 *   saga's workers on the client's NativeConnection (dev/bench/worker-process.ts eager);
 * - sagaflow-hot-sku: sagaflow with every order on one SKU (row contention on its stock);
 * - sagaflow-http: sagaflow started through POST /orders?wait=30s (the API in the driver);
 * - sagaflow-stream: sagaflow started by an order message on a JetStream stream of the bench's
 *   own through the intake (in the driver), timed from the publish to the saga's result;
 * - naive: a saga as the Temporal samples write one (every activity remote on its system's queue)
 *   over the same activities writing the same rows, with no ledger;
 * - no-ledger: the naive saga with the order saga's kinds of activity (the database-only steps
 *   local), so sagaflow / no-ledger is what exactly-once costs;
 * - floor: no-ledger's shape with no-op activities: what Temporal itself costs for six activities;
 * - floor-local: all six steps no-op local activities in one workflow task: the floor of the shape
 *   the order saga now has (orderSagaV2);
 * - dbos: the same six steps' code on DBOS Transact, the database steps DBOS transactions, the
 *   provider's and carrier's calls DBOS steps, in a process of its own (./dbos.ts);
 * - restate: the same six steps as ctx.run() calls of a Restate service, on a restate-server and a
 *   service endpoint of their own (./restate.ts).
 * Orders spread over `skus` SKUs (every one stocked for the whole run), but for sagaflow-hot-sku.
 */
export const VARIANTS = [
  'sagaflow',
  'sagaflow-v1',
  'sagaflow-eager',
  'sagaflow-hot-sku',
  'sagaflow-http',
  'sagaflow-stream',
  'naive',
  'no-ledger',
  'floor',
  'floor-local',
  'dbos',
  'restate',
] as const;
export type Variant = (typeof VARIANTS)[number];

/** The process groups CPU is charged to, per saga. */
const CPU_GROUPS = ['workers', 'server', 'postgres', 'driver', 'machine'] as const;
export type CpuGroup = (typeof CPU_GROUPS)[number];
export type CpuPerSaga = Record<CpuGroup, number>;

export interface BenchOptions {
  sagas: number;
  inFlight: number;
  rounds: number;
  variants: Variant[];
  /** SKUs the orders spread over (every variant but sagaflow-hot-sku). */
  skus: number;
  /** Sagas run one at a time per variant and round, after the loaded run: the lone-saga latency. */
  lone: number;
  /** Long polls per queue in every variant's workers; the workers' default if unset. */
  pollers?: number;
  /** Write a V8 CPU profile of the sagaflow worker here (it is written when the worker exits). */
  profileDir?: string;
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
  /** CPU ms per completed saga over the round's window, per process group. */
  cpuMsPerSaga: CpuPerSaga;
  /** p50 of the lone sagas (one at a time) of this round, if any ran. */
  loneP50Ms?: number;
  loneSagas?: number;
  /** sagaflow-eager: how many starts the server answered with the first workflow task. */
  eagerlyStarted?: number;
}

export interface Ratio {
  name: string;
  median: number;
  min: number;
  max: number;
}

export interface VariantSummary {
  sagasPerSecond: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  cpuMsPerSaga: CpuPerSaga;
  loneP50Ms?: number;
  /** sagaflow-eager: starts answered eagerly, of all its starts (warm-up and lone ones included). */
  eagerlyStarted?: { eager: number; of: number };
}

export interface BenchReport {
  options: Omit<BenchOptions, 'log'>;
  /** What ran where: the pids of each variant's worker (or engine) processes, the server's, the driver's. */
  processes: {
    driver: number;
    temporalServer?: number;
    variants: Record<string, { workers: { name: string; pid: number }[]; server?: { name: string; pid: number } }>;
  };
  /**
   * CPU in use (in cores) over 2 s with every variant's workers idle, before the rounds: the
   * background each round's window also holds (long polls, timers), charged to whichever ran.
   */
  idle: { machineCores: number; temporalServerCores: number; postgresCores: number; workersCores: number };
  rounds: RoundResult[];
  /** With profileDir: when the profiled sagaflow worker started and its loaded runs, to read its profile by. */
  profile?: { startedAt: number; windows: { from: number; to: number; sagas: number }[] };
  /** Per variant: the median over rounds of each figure. */
  summary: Record<string, VariantSummary>;
  /** Per-round ratios (same round, so the same machine noise), median and min–max over rounds. */
  ratios: Ratio[];
}

/** The worker queue of a variant: sagaflow-http and sagaflow-stream start sagaflow's sagas. */
const workerOf = (v: Variant): Variant => (v === 'sagaflow-http' || v === 'sagaflow-stream' ? 'sagaflow' : v);

const SAMPLE_WORKFLOW: Partial<Record<Variant, string>> = {
  naive: 'naiveSaga',
  'no-ledger': 'sampleSaga',
  floor: 'sampleSaga',
  'floor-local': 'allLocalSaga',
};

export async function runBench(stack: Stack, opts: BenchOptions): Promise<BenchReport> {
  const run = randomBytes(3).toString('hex');
  const log = opts.log;
  const connection = await Connection.connect({ address: stack.temporal.address });
  const dataConverter = stack.dataConverter ?? dataConverterFromEnv();
  const client = new Client({ connection, namespace: stack.temporal.namespace, dataConverter });
  const queue = (v: Variant) => `bench-${workerOf(v)}-${run}`;
  const wants = new Set(opts.variants.map(workerOf));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), `sagaflow-bench-${run}-`));

  const processes: BenchProcess[] = [];
  /** The profiled sagaflow worker: when it started, and the loaded runs to count. */
  let profile: BenchReport['profile'];
  const workersOf = new Map<Variant, BenchProcess[]>();
  const serverOf = new Map<Variant, BenchProcess>();
  const childEnv: Record<string, string | undefined> = {
    DATABASE_URL: stack.databaseUrl,
    TEMPORAL_ADDRESS: stack.temporal.address,
    TEMPORAL_NAMESPACE: stack.temporal.namespace,
    PAYMENT_PROVIDER_URL: stack.paymentProviderUrl,
    CARRIER_URL: stack.carrierUrl,
    LOG_LEVEL: 'warn',
    ...stack.payloadEnv,
  };
  let api: RunningApi | undefined;
  let nc: NatsConnection | undefined;
  let intake: RunningInbox | undefined;
  let restate: RunningRestate | undefined;
  const streamTopology = orderIntakeTopology({
    stream: `BENCH_ORDERS_${run}`,
    subjects: [`bench.${run}.orders`],
    consumer: `bench-${run}`,
    deadLetterStream: `BENCH_ORDERS_DLQ_${run}`,
    deadLetterSubject: `bench.${run}.dead`,
  });
  const rounds: RoundResult[] = [];
  const eager = { eager: 0, of: 0 };
  let idle: BenchReport['idle'] = { machineCores: NaN, temporalServerCores: NaN, postgresCores: NaN, workersCores: NaN };
  try {
    // Bundles once, before any worker starts: a worker process would otherwise run webpack at start.
    const quiet = { info: () => undefined, warn: () => undefined, error: (m: string) => log(m), debug: () => undefined, trace: () => undefined, log: () => undefined };
    const sagaflowWanted = ['sagaflow', 'sagaflow-v1', 'sagaflow-eager', 'sagaflow-hot-sku'].some((v) => wants.has(v as Variant));
    let sagaflowBundle: string | undefined;
    if (sagaflowWanted) {
      sagaflowBundle = prebuiltBundle()?.codePath;
      if (!sagaflowBundle) {
        log('bundling the order saga\'s workflow code (npm run build:bundle makes a prebuilt one)');
        const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, payloadConverterPath: strictPayloadConverterPath, ...toolkitBundlerOptions(), logger: quiet });
        sagaflowBundle = path.join(tmp, 'workflow-bundle.js');
        fs.writeFileSync(sagaflowBundle, code);
      }
    }
    let sampleBundle: string | undefined;
    if (Object.keys(SAMPLE_WORKFLOW).some((v) => wants.has(v as Variant))) {
      const { code } = await bundleWorkflowCode({
        workflowsPath: require.resolve('./workflows'),
        payloadConverterPath: strictPayloadConverterPath,
        ...toolkitBundlerOptions(),
        logger: quiet,
      });
      sampleBundle = path.join(tmp, 'sample-bundle.js');
      fs.writeFileSync(sampleBundle, code);
    }

    let eagerProcess: SagaProcess | undefined;
    let dbosProcess: SagaProcess | undefined;
    const pollersEnv = opts.pollers ? { SAGAFLOW_WORKER_POLLERS: String(opts.pollers), BENCH_POLLERS: String(opts.pollers) } : {};
    const startWorkers = async (v: Variant): Promise<void> => {
      const env = { ...childEnv, ...pollersEnv, TEMPORAL_TASK_QUEUE: queue(v) };
      let p: BenchProcess;
      if (v === 'sagaflow' || v === 'sagaflow-v1' || v === 'sagaflow-hot-sku') {
        // The real worker entry point, as deployed; ready when its /readyz says so.
        const port = await freePort();
        const profiled = v === 'sagaflow' && opts.profileDir !== undefined;
        if (profiled) profile = { startedAt: Date.now(), windows: [] };
        p = spawnEntry(`${v} worker`, 'bin/worker.ts', [], { ...env, METRICS_PORT: String(port), SAGAFLOW_WORKFLOW_BUNDLE: sagaflowBundle }, false, profiled ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] : []);
        processes.push(p);
        await untilReady(p, `${v} worker`, 180_000, async () => {
          const res = await fetch(`http://127.0.0.1:${port}/readyz`);
          if (res.status !== 200) throw new Error(`readyz ${res.status}`);
        });
      } else if (v === 'sagaflow-eager') {
        p = await spawnSagaProcess(`${v} worker and starter`, 'dev/bench/worker-process.ts', ['eager'], { ...env, BENCH_WORKFLOW_BUNDLE: sagaflowBundle });
        processes.push(p);
        eagerProcess = p as SagaProcess;
      } else if (SAMPLE_WORKFLOW[v]) {
        p = await spawnSagaProcess(`${v} worker`, 'dev/bench/worker-process.ts', ['sample', v], { ...env, BENCH_WORKFLOW_BUNDLE: sampleBundle });
        processes.push(p);
      } else if (v === 'dbos') {
        const url = new URL(stack.databaseUrl);
        url.pathname = `/dbos_bench_${run}`;
        url.search = '';
        p = await spawnSagaProcess('dbos', 'dev/bench/dbos-process.ts', [], { ...env, DBOS_SYSTEM_DATABASE_URL: url.toString() });
        processes.push(p);
        dbosProcess = p as SagaProcess;
      } else if (v === 'restate') {
        restate = await startRestate({ env, dir: tmp, log });
        processes.push(restate.server, restate.endpoint);
        serverOf.set(v, restate.server);
        p = restate.endpoint;
      } else {
        return;
      }
      workersOf.set(v, [p]);
    };
    log(`starting the workers of ${[...wants].join(', ')}, each in processes of its own`);
    await Promise.all([...wants].map(startWorkers));
    for (const v of opts.variants) if (v !== workerOf(v)) workersOf.set(v, workersOf.get(workerOf(v))!);

    let apiKey = '';
    if (opts.variants.includes('sagaflow-http')) {
      api = await startApi({ db: stack.db, temporal: client, taskQueue: queue('sagaflow'), log: () => undefined, recoveryIntervalMs: 0 });
      apiKey = (await createApiClient(stack.db, `bench-${run}`)).apiKey;
    }
    // The stream door: the intake in the driver, on streams of the bench's own; each message's
    // outcome (the order it made) settles the saga waiting for it.
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

    // Stock for every saga the run can start, on each SKU (orders spread over them) and the hot one.
    const skus = Array.from({ length: opts.skus }, (_, i) => `bench-${run}-${i}`);
    const hotSku = `bench-${run}-hot`;
    const stock = (opts.sagas + opts.lone) * opts.rounds * opts.variants.length + 100;
    await stack.db.query(`INSERT INTO inventory (sku, on_hand) SELECT unnest($1::text[]), $2`, [[...skus, hotSku], stock]);
    let picked = 0;
    const order = (variant: Variant, id: string): OrderInput => ({
      orderId: id,
      customerId: 'bench',
      items: [{ sku: variant === 'sagaflow-hot-sku' ? hotSku : skus[(picked++ * 7919) % skus.length]!, quantity: 1 }],
      amount: { amountMinor: 1_000, currency: 'EUR' },
      paymentToken: 'tok_visa',
      shippingAddress: { name: 'Bench', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
    });
    const expectCompleted = (id: string, result: unknown) => {
      const status = (result as { status?: string }).status;
      if (status !== 'completed') throw new Error(`${id}: ${status}`);
    };

    /** One saga from start to its result, in ms; throws if it did not complete. */
    const oneSaga = async (variant: Variant, n: string): Promise<number> => {
      const id = `${variant}-${run}-${n}`;
      const o = order(variant, id);
      const t0 = performance.now();
      if (variant === 'sagaflow' || variant === 'sagaflow-hot-sku') {
        expectCompleted(id, await (await startOrderSaga(client, o, queue(variant))).result());
      } else if (variant === 'sagaflow-v1') {
        // The order saga's earlier workflow type: payment and shipment on their own queues.
        expectCompleted(id, await (await startOrderSaga(client, o, queue(variant), { workflowType: 'orderSaga' })).result());
      } else if (variant === 'sagaflow-eager') {
        const r = await eagerProcess!.run(o, orderWorkflowId(id));
        eager.of += 1;
        if (r.eagerlyStarted) eager.eager += 1;
      } else if (variant === 'sagaflow-http') {
        const { orderId: _drop, ...body } = o;
        const res = await fetch(`${api!.url}/orders?wait=30s`, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'idempotency-key': id, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        const view = (await res.json()) as { saga?: { status?: string } };
        if (res.status !== 201 || view.saga?.status !== 'completed') throw new Error(`${id}: ${res.status} ${JSON.stringify(view)}`);
      } else if (variant === 'sagaflow-stream') {
        const { orderId: _drop, ...body } = o;
        const made = new Promise<string | Error>((resolve) => awaiting.set(id, resolve));
        await jetstream(nc!).publish(streamTopology.subjects[0]!, JSON.stringify(body), { msgID: id });
        const orderId = await made;
        awaiting.delete(id);
        if (orderId instanceof Error) throw orderId;
        expectCompleted(id, await client.workflow.getHandle(orderWorkflowId(orderId)).result());
      } else if (variant === 'dbos') {
        await dbosProcess!.run(o, orderWorkflowId(id));
      } else if (variant === 'restate') {
        await restate!.run(o);
      } else {
        const result = await client.workflow.execute(SAMPLE_WORKFLOW[variant]!, { workflowId: orderWorkflowId(id), taskQueue: queue(variant), args: [o] });
        expectCompleted(id, result);
      }
      return performance.now() - t0;
    };

    const temporalPid = findTemporalServerPid(stack.temporal.address);
    if (temporalPid === undefined) log(`no Temporal server process found for ${stack.temporal.address} on this machine: its CPU is not charged`);
    const groups = (v: Variant, sample: CpuSample): Record<Exclude<CpuGroup, 'machine'>, number[]> => ({
      workers: (workersOf.get(v) ?? []).map((p) => p.pid),
      server: v === 'dbos' ? [] : v === 'restate' ? [serverOf.get(v)!.pid] : temporalPid ? [temporalPid] : [],
      postgres: pidsNamed(sample, 'postgres'),
      driver: [process.pid],
    });
    const cpuPerSaga = (v: Variant, before: CpuSample, after: CpuSample, sagas: number): CpuPerSaga => {
      const ms = (ticks: number) => (sagas ? (ticks / ticksPerSecond()) * 1000 / sagas : NaN);
      const g = groups(v, after);
      return {
        workers: ms(groupTicks(before, after, g.workers)),
        server: ms(groupTicks(before, after, g.server)),
        postgres: ms(groupTicks(before, after, g.postgres)),
        driver: ms(groupTicks(before, after, g.driver)),
        machine: ms(after.machineTicks - before.machineTicks),
      };
    };
    const checkAlive = () => {
      for (const p of processes) {
        const gone = p.exited();
        if (gone) throw new Error(`${p.name} ${gone}:\n${p.output()}`);
      }
    };

    // A short warm-up per variant: bundles, connections, caches and JIT are not what is measured.
    for (const v of opts.variants) {
      await Promise.all([0, 1, 2, 3].map((i) => oneSaga(v, `warm${i}`)));
      await oneSaga(v, 'warm-lone');
    }
    // What the machine spends with every variant's workers idle (their long polls, the servers'
    // timers, PostgreSQL's background work): part of every variant's window, told apart here.
    const idleBefore = sampleCpu();
    const idleT0 = performance.now();
    await new Promise((r) => setTimeout(r, 2000));
    const idleAfter = sampleCpu();
    const idleSeconds = (performance.now() - idleT0) / 1000;
    const share = (ticks: number) => ticks / ticksPerSecond() / idleSeconds;
    idle = {
      machineCores: share(idleAfter.machineTicks - idleBefore.machineTicks),
      temporalServerCores: temporalPid ? share(groupTicks(idleBefore, idleAfter, [temporalPid])) : NaN,
      postgresCores: share(groupTicks(idleBefore, idleAfter, pidsNamed(idleAfter, 'postgres'))),
      workersCores: share(groupTicks(idleBefore, idleAfter, processes.map((p) => p.pid))),
    };
    log(`idle: the machine busy ${idle.machineCores.toFixed(3)} cores (workers ${idle.workersCores.toFixed(3)}, Temporal ${idle.temporalServerCores.toFixed(3)}, PostgreSQL ${idle.postgresCores.toFixed(3)})`);
    for (let round = 1; round <= opts.rounds; round++) {
      // Interleaved, and in a rotated order each round, so drift in the machine's load hits every variant alike.
      const order_ = opts.variants.map((_, i) => opts.variants[(i + round - 1) % opts.variants.length]!);
      const results = new Map<Variant, RoundResult>();
      for (const variant of order_) {
        checkAlive();
        const latencies: number[] = [];
        let failed = 0;
        let next = 0;
        const eagerBefore = eager.eager;
        const before = sampleCpu();
        const from = Date.now();
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: Math.min(opts.inFlight, opts.sagas) }, async () => {
            while (next < opts.sagas) {
              const n = next++;
              try {
                latencies.push(await oneSaga(variant, `r${round}-${n}`));
              } catch (err) {
                failed += 1;
                log(`${variant}: ${(err as Error).message}`);
              }
            }
          }),
        );
        const seconds = (performance.now() - t0) / 1000;
        const after = sampleCpu();
        if (variant === 'sagaflow') profile?.windows.push({ from, to: Date.now(), sagas: latencies.length });
        const r: RoundResult = {
          round,
          variant,
          sagas: latencies.length,
          failed,
          sagasPerSecond: latencies.length / seconds,
          p50Ms: percentile(latencies, 50),
          p95Ms: percentile(latencies, 95),
          p99Ms: percentile(latencies, 99),
          cpuMsPerSaga: cpuPerSaga(variant, before, after, latencies.length),
          ...(variant === 'sagaflow-eager' ? { eagerlyStarted: eager.eager - eagerBefore } : {}),
        };
        results.set(variant, r);
        rounds.push(r);
        log(
          `round ${round} ${variant}: ${r.sagasPerSecond.toFixed(2)} sagas/s, p50 ${r.p50Ms.toFixed(0)} ms, ` +
            `CPU ms/saga workers ${r.cpuMsPerSaga.workers.toFixed(1)} machine ${r.cpuMsPerSaga.machine.toFixed(1)}${failed ? `, ${failed} failed` : ''}`,
        );
      }
      // Lone sagas: one at a time, the variants taking turns, so none runs beside another's.
      if (opts.lone > 0) {
        const lone = new Map<Variant, number[]>(order_.map((v) => [v, []]));
        for (let i = 0; i < opts.lone; i++) {
          for (const variant of order_) {
            try {
              lone.get(variant)!.push(await oneSaga(variant, `r${round}-lone${i}`));
            } catch (err) {
              results.get(variant)!.failed += 1;
              log(`${variant} (lone): ${(err as Error).message}`);
            }
          }
        }
        for (const [variant, ms] of lone) {
          const r = results.get(variant)!;
          r.loneP50Ms = percentile(ms, 50);
          r.loneSagas = ms.length;
        }
        log(`round ${round} lone p50: ${[...lone].map(([v, ms]) => `${v} ${percentile(ms, 50).toFixed(0)} ms`).join(', ')}`);
      }
    }
    return {
      options: { sagas: opts.sagas, inFlight: opts.inFlight, rounds: opts.rounds, variants: opts.variants, skus: opts.skus, lone: opts.lone, pollers: opts.pollers, profileDir: opts.profileDir },
      processes: {
        driver: process.pid,
        temporalServer: temporalPid,
        variants: Object.fromEntries(
          opts.variants.map((v) => [
            v,
            {
              workers: (workersOf.get(v) ?? []).map((p) => ({ name: p.name, pid: p.pid })),
              ...(serverOf.get(v) ? { server: { name: serverOf.get(v)!.name, pid: serverOf.get(v)!.pid } } : {}),
            },
          ]),
        ),
      },
      idle,
      rounds,
      ...(profile ? { profile } : {}),
      ...summarize(rounds, opts.variants, eager),
    };
  } finally {
    await intake?.stop();
    if (nc) {
      const jsm = await jetstream(nc).jetstreamManager();
      for (const s of [streamTopology.stream, streamTopology.deadLetterStream]) await jsm.streams.delete(s).catch(() => undefined);
      await nc.close();
    }
    await api?.close();
    await Promise.allSettled(processes.map((p) => p.stop()));
    await connection.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Whether a variant can run on this machine (Restate needs its server package); why not, if it cannot. */
export function unavailable(v: Variant): string | undefined {
  return v === 'restate' ? restateAvailable() : undefined;
}

function summarize(rounds: RoundResult[], variants: Variant[], eager: { eager: number; of: number }): Pick<BenchReport, 'summary' | 'ratios'> {
  const summary: BenchReport['summary'] = {};
  for (const v of variants) {
    const rs = rounds.filter((r) => r.variant === v);
    const lone = rs.flatMap((r) => (r.loneP50Ms === undefined ? [] : [r.loneP50Ms]));
    summary[v] = {
      sagasPerSecond: median(rs.map((r) => r.sagasPerSecond)),
      p50Ms: median(rs.map((r) => r.p50Ms)),
      p95Ms: median(rs.map((r) => r.p95Ms)),
      p99Ms: median(rs.map((r) => r.p99Ms)),
      cpuMsPerSaga: Object.fromEntries(CPU_GROUPS.map((g) => [g, median(rs.map((r) => r.cpuMsPerSaga[g]))])) as CpuPerSaga,
      ...(lone.length ? { loneP50Ms: median(lone) } : {}),
      ...(v === 'sagaflow-eager' ? { eagerlyStarted: eager } : {}),
    };
  }
  const ratios: Ratio[] = [];
  const ratio = (name: string, a: Variant, b: Variant, of: (r: RoundResult) => number | undefined, invert = false) => {
    if (!variants.includes(a) || !variants.includes(b)) return;
    const per = [...new Set(rounds.map((r) => r.round))].flatMap((round) => {
      const x = rounds.find((r) => r.round === round && r.variant === a);
      const y = rounds.find((r) => r.round === round && r.variant === b);
      const [fx, fy] = [x && of(x), y && of(y)];
      return fx !== undefined && fy !== undefined && Number.isFinite(fx) && Number.isFinite(fy) ? [invert ? fy / fx : fx / fy] : [];
    });
    if (per.length) ratios.push({ name, median: median(per), min: Math.min(...per), max: Math.max(...per) });
  };
  const tput = (r: RoundResult) => r.sagasPerSecond;
  const p50 = (r: RoundResult) => r.p50Ms;
  const lone = (r: RoundResult) => r.loneP50Ms;
  ratio('sagaflow / floor-local, throughput', 'sagaflow', 'floor-local', tput);
  ratio('sagaflow / floor, throughput', 'sagaflow', 'floor', tput);
  ratio('sagaflow / floor-local, p50 speed (floor-local p50 / sagaflow p50)', 'sagaflow', 'floor-local', p50, true);
  ratio('sagaflow / floor-local, lone-saga p50 (sagaflow / floor-local; target ≤ 1.1)', 'sagaflow', 'floor-local', lone);
  ratio('sagaflow / floor, lone-saga p50 (sagaflow / floor)', 'sagaflow', 'floor', lone);
  ratio('sagaflow / DBOS, throughput', 'sagaflow', 'dbos', tput);
  ratio('sagaflow / DBOS, p50 speed (DBOS p50 / sagaflow p50)', 'sagaflow', 'dbos', p50, true);
  ratio('sagaflow / Restate, throughput', 'sagaflow', 'restate', tput);
  ratio('sagaflow / naive, throughput', 'sagaflow', 'naive', tput);
  ratio('sagaflow / no-ledger, throughput (what exactly-once costs)', 'sagaflow', 'no-ledger', tput);
  ratio('no-ledger / floor, throughput (what the steps\' own work costs)', 'no-ledger', 'floor', tput);
  ratio('sagaflow-eager / sagaflow, throughput', 'sagaflow-eager', 'sagaflow', tput);
  ratio('sagaflow-eager / sagaflow, lone-saga p50', 'sagaflow-eager', 'sagaflow', lone);
  ratio('sagaflow-v1 / sagaflow, throughput', 'sagaflow-v1', 'sagaflow', tput);
  ratio('sagaflow-hot-sku / sagaflow, throughput', 'sagaflow-hot-sku', 'sagaflow', tput);
  ratio('sagaflow-http / sagaflow, throughput', 'sagaflow-http', 'sagaflow', tput);
  ratio('sagaflow-stream / sagaflow-http, throughput (the stream door against the HTTP door)', 'sagaflow-stream', 'sagaflow-http', tput);
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
  const f = (x: number | undefined, digits = 0) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));
  const serverName = (v: string) => (v === 'dbos' ? 'none' : v === 'restate' ? 'restate-server' : 'Temporal');
  const lines = [
    `${r.options.sagas} sagas per variant and round, ${r.options.inFlight} in flight, ${r.options.rounds} rounds, orders over ${r.options.skus} SKUs` +
      `${r.options.lone ? `, ${r.options.lone} lone sagas per variant and round` : ''}${r.options.pollers ? `, ${r.options.pollers} pollers per queue` : ''} (medians over rounds)`,
    '',
    '| variant | sagas/s | p50 ms | p95 ms | p99 ms | lone p50 ms |',
    '|---|---|---|---|---|---|',
    ...Object.entries(r.summary).map(
      ([v, s]) => `| ${v} | ${f(s.sagasPerSecond, 2)} | ${f(s.p50Ms)} | ${f(s.p95Ms)} | ${f(s.p99Ms)} | ${f(s.loneP50Ms)} |`,
    ),
    '',
    'CPU ms per saga under load, by process group (workers: the variant\'s own processes; server: its engine\'s server; ' +
      'postgres: every postgres process; driver: the starter, the API and intake, the simulated provider and carrier; machine: all CPUs, non-idle):',
    '',
    '| variant | workers | server | postgres | driver | machine |',
    '|---|---|---|---|---|---|',
    ...Object.entries(r.summary).map(
      ([v, s]) =>
        `| ${v} | ${f(s.cpuMsPerSaga.workers, 1)} | ${f(s.cpuMsPerSaga.server, 1)} (${serverName(v)}) | ${f(s.cpuMsPerSaga.postgres, 1)} | ${f(s.cpuMsPerSaga.driver, 1)} | ${f(s.cpuMsPerSaga.machine, 1)} |`,
    ),
    '',
    '| ratio | median | min–max over rounds |',
    '|---|---|---|',
    ...r.ratios.map((x) => `| ${x.name} | ${x.median.toFixed(2)} | ${x.min.toFixed(2)}–${x.max.toFixed(2)} |`),
  ];
  lines.push(
    '',
    `Idle, every variant's workers up: the machine busy ${f(r.idle.machineCores, 3)} cores (all workers ${f(r.idle.workersCores, 3)}, ` +
      `Temporal server ${f(r.idle.temporalServerCores, 3)}, PostgreSQL ${f(r.idle.postgresCores, 3)}).` +
      (r.idle.machineCores - r.idle.workersCores - (r.idle.temporalServerCores || 0) - r.idle.postgresCores > 0.2
        ? ' Something else kept the machine busy: every figure above carries that load; rerun on a quiet machine.'
        : ''),
  );
  const eager = r.summary['sagaflow-eager']?.eagerlyStarted;
  if (eager) lines.push('', `sagaflow-eager: ${eager.eager} of ${eager.of} starts eagerly started (the first workflow task in the start's answer).`);
  lines.push(
    '',
    `Processes: driver ${r.processes.driver}, Temporal server ${r.processes.temporalServer ?? 'not found'}; ` +
      Object.entries(r.processes.variants)
        .map(([v, p]) => `${v}: ${[...p.workers, ...(p.server ? [p.server] : [])].map((w) => `${w.name} ${w.pid}`).join(', ')}`)
        .join('; '),
  );
  return lines.join('\n');
}
