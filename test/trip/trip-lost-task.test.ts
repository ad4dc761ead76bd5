/**
 * The trip saga's parallel steps with a workflow task lost mid-way, on the real
 * Temporal dev server and real PostgreSQL. record-trip and the three holds run
 * as local activities, the holds at once (Saga.all), and their undos too, all at
 * once (parallel compensation). A worker process is SIGKILLed the moment one of
 * them settles; the task's retry runs on another worker and meets their rows.
 *
 * Each run is compared with the same trip run without a loss: the saga's result,
 * the trip row (status and reason), the holds, the deposit and the ledger rows
 * must be the same. A cancel sent before the retry is refused where the lost
 * task had met a failure (the hotel sold out), and honoured where it had not.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { strictPayloadConverterPath } from '@sagaflow/toolkit/converter';
import {
  cancelTripUpdate,
  createTripWorker,
  migrateTrips,
  TRIP_WORKFLOWS_PATH,
  TripStep,
  tripWorkflowId,
  type TripInput,
  type TripResult,
} from '../../examples/trip-booking';
import { bundleFromSource } from '../../workers/toolkit-source';
import { createTestContext, databaseUrl, uniqueId, type TestContext } from '../helpers/context';
import { spawnNode, urlWithSchema } from '../helpers/worker-process';
import { atMost, runWithLostTask } from '../helpers/lost-task';

jest.setTimeout(600_000);

let ctx: TestContext;
let bundleDir: string;
let bundlePath: string;

beforeAll(async () => {
  ctx = await createTestContext('trip_lost');
  await migrateTrips(ctx.db);
  bundleDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-trip-lost-'));
  bundlePath = path.join(bundleDir, 'trip-bundle.js');
  fs.writeFileSync(bundlePath, (await bundleWorkflowCode({ workflowsPath: TRIP_WORKFLOWS_PATH, payloadConverterPath: strictPayloadConverterPath, webpackConfigHook: bundleFromSource })).code);
});

afterAll(async () => {
  await ctx?.close();
  if (bundleDir) fs.rmSync(bundleDir, { recursive: true, force: true });
});

/** 'times-out': everything held and the deposit taken, never confirmed; 'sold-out': the hotel has no room. */
type Kind = 'times-out' | 'sold-out';

/** The activity (and hold) whose settling kills the worker. */
const LOSS_POINTS: Record<Kind, { step: string; kind?: string }[]> = {
  'times-out': [{ step: 'recordTrip' }, { step: 'holdItem', kind: 'hotel' }, { step: 'holdItem', kind: 'car' }],
  'sold-out': [{ step: 'holdItem', kind: 'hotel' }, { step: 'releaseItem', kind: 'flight' }, { step: 'closeTrip' }],
};

async function newTrip(kind: Kind): Promise<TripInput> {
  const trip: TripInput = {
    tripId: uniqueId('trip'),
    traveller: 'ada',
    flight: uniqueId('LH'),
    hotel: uniqueId('hotel'),
    car: uniqueId('car'),
    deposit: { amountMinor: 20_000, currency: 'EUR' },
    paymentToken: 'tok_visa',
    confirmWithinMs: 1_500,
  };
  await ctx.db.query(
    `INSERT INTO trip_inventory (kind, item, capacity) VALUES ('flight', $1, 5), ('hotel', $2, $4), ('car', $3, 5)`,
    [trip.flight, trip.hotel, trip.car, kind === 'sold-out' ? 0 : 5],
  );
  return trip;
}

/** Everything the trip leaves behind, with its own IDs replaced so two runs compare. */
async function snapshot(trip: TripInput, result: TripResult) {
  const wf = tripWorkflowId(trip.tripId);
  const q = async (sql: string, args: unknown[]) => (await ctx.db.query(sql, args)).rows;
  const norm = (v: unknown) =>
    JSON.parse(
      JSON.stringify(v)
        .replaceAll(trip.tripId, '<trip>')
        .replaceAll(trip.hotel, '<hotel>')
        .replaceAll(trip.flight, '<flight>')
        .replaceAll(trip.car, '<car>'),
    ) as unknown;
  return norm({
    result: {
      status: result.status,
      failure: result.failure,
      completedSteps: [...result.completedSteps].sort(),
      compensations: result.compensations.map((c) => [c.step, c.status]).sort(),
    },
    trip: (await q(`SELECT status, failure_reason FROM trips WHERE id = $1`, [trip.tripId]))[0],
    holds: await q(`SELECT kind, status FROM trip_holds WHERE trip_id = $1 ORDER BY kind`, [trip.tripId]),
    inventory: await q(`SELECT kind, held, booked FROM trip_inventory WHERE item IN ($1, $2, $3) ORDER BY kind`, [trip.flight, trip.hotel, trip.car]),
    deposit: await q(`SELECT status FROM trip_deposits WHERE trip_id = $1`, [trip.tripId]),
    ledger: (await q(`SELECT key, state, undone, cause FROM step_ledger WHERE workflow_id = $1 ORDER BY key`, [wf])).map((r) => ({
      ...r,
      key: String(r.key).slice(wf.length + 1),
    })),
  });
}

const start = (trip: TripInput, taskQueue: string) =>
  ctx.client.workflow.start<(t: TripInput) => Promise<TripResult>>('tripSaga', {
    workflowId: tripWorkflowId(trip.tripId),
    taskQueue,
    args: [trip],
    workflowTaskTimeout: '4s',
  });

async function worker(taskQueue: string): Promise<() => Promise<void>> {
  const w = await createTripWorker({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue,
    deps: { db: ctx.db, paymentProviderUrl: ctx.payment.url, providerTimeoutMs: 3000 },
    workerOptions: { workflowsPath: undefined, workflowBundle: { codePath: bundlePath }, dataConverter: ctx.dataConverter },
  });
  return ctx.startWorker(w);
}

async function baseline(kind: Kind) {
  const trip = await newTrip(kind);
  const queue = uniqueId('trip-base');
  const stop = await worker(queue);
  try {
    return await snapshot(trip, await (await start(trip, queue)).result());
  } finally {
    await stop();
  }
}

interface LossRun {
  snapshot: unknown;
  cancel?: string;
}

async function withLostTask(kind: Kind, at: { step: string; kind?: string }, cancel: boolean): Promise<LossRun> {
  const trip = await newTrip(kind);
  const queue = uniqueId('trip-lost');
  const run = await runWithLostTask<TripResult>({
    dying: spawnNode(
      'test/helpers/scripts/trip-worker-dies-after-step.ts',
      {
        DATABASE_URL: urlWithSchema(databaseUrl(), ctx.schema),
        TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS!,
        TEMPORAL_TASK_QUEUE: queue,
        PAYMENT_PROVIDER_URL: ctx.payment.url,
        DIE_AFTER_STEP: at.step,
        ...(at.kind ? { DIE_AFTER_KIND: at.kind } : {}),
        WORKFLOW_BUNDLE: bundlePath,
        // The example imports `sagaflow/*`: inside this repository, the sources (package.json's exports).
        NODE_OPTIONS: '--conditions=sagaflow-source',
      },
      'worker ready',
    ),
    start: () => start(trip, queue),
    survivor: () => worker(queue),
    cancel: cancel ? { update: cancelTripUpdate, reason: 'plans changed' } : undefined,
  });
  return { snapshot: await snapshot(trip, run.result), cancel: run.cancel };
}

const name = (c: { kind: Kind; at: { step: string; kind?: string }; cancel: boolean }) =>
  `${c.kind}/${c.at.step}${c.at.kind ? `(${c.at.kind})` : ''}${c.cancel ? '+cancel' : ''}`;
const cases = (Object.keys(LOSS_POINTS) as Kind[]).flatMap((kind) =>
  LOSS_POINTS[kind].flatMap((at) => [false, true].map((cancel) => ({ kind, at, cancel }))),
);

describe("the trip saga's parallel local steps with a workflow task lost: the retry decides as the lost task did", () => {
  let baselines: Record<Kind, unknown>;
  const runs = new Map<string, LossRun>();

  beforeAll(async () => {
    const [timesOut, soldOut] = await Promise.all([baseline('times-out'), baseline('sold-out')]);
    baselines = { 'times-out': timesOut, 'sold-out': soldOut };
    const done = await atMost(3, cases.map((c) => () => withLostTask(c.kind, c.at, c.cancel)));
    cases.forEach((c, i) => runs.set(name(c), done[i]!));
  });

  test('the runs without a loss end as designed', () => {
    expect(baselines['times-out']).toMatchObject({
      result: { status: 'compensated', failure: { type: 'ConfirmationTimeout' } },
      trip: { status: 'failed' },
      holds: [{ kind: 'car', status: 'released' }, { kind: 'flight', status: 'released' }, { kind: 'hotel', status: 'released' }],
      deposit: [{ status: 'refunded' }],
    });
    expect(baselines['sold-out']).toMatchObject({
      result: {
        status: 'compensated',
        failure: { type: 'SoldOut' },
        completedSteps: [TripStep.holdCar, TripStep.holdFlight, TripStep.recordTrip],
      },
      trip: { status: 'failed', failure_reason: expect.stringMatching(/^SoldOut: /) },
      holds: [{ kind: 'car', status: 'released' }, { kind: 'flight', status: 'released' }],
      deposit: [],
    });
  });

  test.each(cases.filter((c) => !c.cancel).map((c) => [name(c), c] as const))('%s: the same outcome, reason, steps and rows as without the loss', (n, c) => {
    expect(runs.get(n)!.snapshot).toEqual(baselines[c.kind]);
  });

  test.each(cases.filter((c) => c.cancel && c.kind === 'sold-out').map((c) => [name(c), c] as const))(
    '%s: the cancel is refused for the sold-out hotel the lost task met, and nothing else changes',
    (n, c) => {
      const run = runs.get(n)!;
      // Refused by the saga's answer (the failure met again) or, where a heartbeat of the long task had
      // already put the compensation in history before the loss, by its validator.
      expect(run.cancel).toMatch(/^refused: (the saga is already compensating for SoldOut|saga already compensating$)/);
      expect(run.snapshot).toEqual(baselines[c.kind]);
    },
  );

  test.each(cases.filter((c) => c.cancel && c.kind === 'times-out').map((c) => [name(c), c] as const))(
    '%s: the cancel is honoured: the trip cancelled, every hold released, no deposit taken',
    (n) => {
      const run = runs.get(n)!;
      expect(run.cancel).toBe('accepted');
      expect(run.snapshot).toMatchObject({
        result: {
          status: 'cancelled',
          failure: { type: 'SagaCancelled', message: 'plans changed' },
          completedSteps: [TripStep.holdCar, TripStep.holdFlight, TripStep.holdHotel, TripStep.recordTrip],
        },
        trip: { status: 'cancelled', failure_reason: 'SagaCancelled: plans changed' },
        holds: [{ kind: 'car', status: 'released' }, { kind: 'flight', status: 'released' }, { kind: 'hotel', status: 'released' }],
        inventory: [{ kind: 'car', held: 0, booked: 0 }, { kind: 'flight', held: 0, booked: 0 }, { kind: 'hotel', held: 0, booked: 0 }],
        deposit: [],
      });
    },
  );
});
