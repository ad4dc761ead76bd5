/**
 * A workflow task lost at every point of the order saga's local steps, against
 * the real Temporal dev server and real PostgreSQL. record-order,
 * reserve-inventory and fraud-check (and their undos) run as local activities:
 * they commit while their workflow task is still open. A worker process is
 * SIGKILLed the moment one of them settles, so the task never completes and the
 * server's history holds none of them while their rows are in PostgreSQL; the
 * task's retry runs on another worker and meets those rows.
 *
 * The retry must reach the lost task's decisions: each scenario's saga result
 * (outcome, failure, steps done, compensations), order row (status and reason),
 * ledger rows (state, the state a tombstone replaced, the recorded cause), stock,
 * fraud checks and payments are compared with the same saga run without a loss.
 * With a cancel that reaches the saga with the retry, the cancel is answered as
 * it would have been had it come after the lost task: refused where that task
 * had already met a business failure, and honoured (the order cancelled, every
 * committed step undone) where it had not.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { strictPayloadConverterPath } from '@sagaflow/toolkit/converter';
import { createSagaWorker } from '../../workers/worker';
import { WORKFLOWS_PATH } from '../../workers/worker';
import { cancelUpdate } from '../../workflows/order-saga';
import { orderWorkflowId } from '../../workflows/order/ids';
import { Step } from '../../workflows/order/steps';
import type { OrderInput, OrderSagaResult } from '../../workflows/order/types';
import { createTestContext, orderInput, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { spawnNode, workerEnv } from '../helpers/worker-process';
import { atMost, runWithLostTask } from '../helpers/lost-task';
import { bundleFromSource } from '../../workers/toolkit-source';
import { PAYMENT_PROVIDER_LIMIT } from '../../activities/payments';
import { addFault } from '../../dev/services/clients';

jest.setTimeout(600_000);

let ctx: TestContext;
let bundleDir: string;
let bundlePath: string;

beforeAll(async () => {
  ctx = await createTestContext('lost_task');
  bundleDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-lost-task-'));
  bundlePath = path.join(bundleDir, 'workflow-bundle.js');
  fs.writeFileSync(bundlePath, (await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, payloadConverterPath: strictPayloadConverterPath, webpackConfigHook: bundleFromSource })).code);
});

afterAll(async () => {
  await ctx?.close();
  if (bundleDir) fs.rmSync(bundleDir, { recursive: true, force: true });
});

type Kind = 'completes' | 'out-of-stock' | 'fraud';

/** Where the first workflow task is lost: the local activity whose commit kills its worker. */
const LOSS_POINTS: Record<Kind, string[]> = {
  completes: ['recordOrder', 'reserveInventory', 'checkFraud'],
  'out-of-stock': ['recordOrder', 'reserveInventory', 'releaseInventory', 'cancelOrder'],
  fraud: ['recordOrder', 'reserveInventory', 'checkFraud', 'voidFraudCheck', 'releaseInventory', 'cancelOrder'],
};

function newOrder(kind: Kind): { order: OrderInput; stock: number } {
  const order = orderInput({ paymentToken: kind === 'fraud' ? 'tok_fraud' : 'tok_visa' });
  return { order, stock: kind === 'out-of-stock' ? 1 : 10 };
}

/** Everything a saga leaves behind, with its own IDs replaced so two runs compare. */
async function snapshot(order: OrderInput, result: OrderSagaResult) {
  const wf = orderWorkflowId(order.orderId);
  const sku = order.items[0]!.sku;
  const norm = (v: unknown) => JSON.parse(JSON.stringify(v ?? null).replaceAll(sku, '<sku>').replaceAll(order.orderId, '<order>')) as unknown;
  const q = async (sql: string, args: unknown[]) => (await ctx.db.query(sql, args)).rows;
  return norm({
    result: {
      status: result.status,
      failure: result.failure,
      completedSteps: result.completedSteps,
      compensations: result.compensations.map((c) => [c.step, c.status]),
    },
    order: (await q(`SELECT status, failure_reason FROM orders WHERE id = $1`, [order.orderId]))[0],
    ledger: (await q(`SELECT key, state, undone, cause FROM step_ledger WHERE workflow_id = $1 ORDER BY key`, [wf])).map((r) => ({
      ...r,
      key: String(r.key).slice(wf.length + 1),
    })),
    stock: (await q(`SELECT on_hand, reserved FROM inventory WHERE sku = $1`, [sku]))[0],
    reservations: await q(`SELECT status FROM reservations WHERE order_id = $1`, [order.orderId]),
    fraud: await q(`SELECT decision, status FROM fraud_checks WHERE order_id = $1`, [order.orderId]),
    payments: await q(`SELECT status FROM payments WHERE order_id = $1`, [order.orderId]),
  });
}

type SagaType = 'orderSaga' | 'orderSagaV2';

async function start(order: OrderInput, taskQueue: string, type: SagaType = 'orderSaga') {
  // A short workflow task timeout: the lost task's retry is scheduled 4 s after its worker died.
  return ctx.client.workflow.start<(o: OrderInput) => Promise<OrderSagaResult>>(type, {
    workflowId: orderWorkflowId(order.orderId),
    taskQueue,
    args: [order],
    workflowTaskTimeout: '4s',
  });
}

async function worker(taskQueue: string): Promise<() => Promise<void>> {
  const w = await createSagaWorker({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue,
    deps: ctx.deps,
    workflowBundle: { codePath: bundlePath },
  });
  return ctx.startWorker(w);
}

/** The saga of `kind` on a worker that never dies: what every lost-task run must match. */
async function baseline(kind: Kind, type: SagaType = 'orderSaga') {
  const { order, stock } = newOrder(kind);
  await seedInventory(ctx.db, { [order.items[0]!.sku]: stock });
  const queue = uniqueId('lost-base');
  const stop = await worker(queue);
  try {
    const result = await (await start(order, queue, type)).result();
    return snapshot(order, result);
  } finally {
    await stop();
  }
}

interface LossRun {
  snapshot: unknown;
  /** The answer to a cancel sent before the retry, if one was. */
  cancel?: 'accepted' | string;
}

/** The saga of `kind`, its first workflow task lost when `dieAfter` settles; a cancel sent before its retry if asked. */
async function withLostTask(kind: Kind, dieAfter: string, cancel: boolean, type: SagaType = 'orderSaga'): Promise<LossRun> {
  const { order, stock } = newOrder(kind);
  await seedInventory(ctx.db, { [order.items[0]!.sku]: stock });
  const queue = uniqueId('lost');
  const run = await runWithLostTask<OrderSagaResult>({
    dying: spawnNode(
      'test/helpers/scripts/worker-dies-after-step.ts',
      { ...workerEnv(ctx, queue), DIE_AFTER_STEP: dieAfter, WORKFLOW_BUNDLE: bundlePath },
      'worker ready',
    ),
    start: () => start(order, queue, type),
    survivor: () => worker(queue),
    cancel: cancel ? { update: cancelUpdate, reason: 'changed my mind' } : undefined,
  });
  return { snapshot: await snapshot(order, run.result), cancel: run.cancel };
}

const cases = (Object.keys(LOSS_POINTS) as Kind[]).flatMap((kind) =>
  LOSS_POINTS[kind].flatMap((dieAfter) => [false, true].map((cancel) => ({ kind, dieAfter, cancel }))),
);

// orderSagaV2 (the second describe): the database steps are local in both types, and the matrix
// above covers a loss after each; here a loss after the last of them (with a cancel), and after
// each step orderSagaV2 made local.
const v2Cases = [
  ...['chargePayment', 'createShipment', 'completeOrder'].map((dieAfter) => ({ dieAfter, cancel: false })),
  ...['checkFraud', 'chargePayment', 'createShipment', 'completeOrder'].map((dieAfter) => ({ dieAfter, cancel: true })),
];

let matrix: Promise<{ v1: LossRun[]; v2: LossRun[] }> | undefined;
/**
 * Both describes' runs, six at once: each spawns a worker process, then mostly waits for the lost
 * task's timeout. Started by whichever describe comes first, shared by both.
 */
function lossRuns(): Promise<{ v1: LossRun[]; v2: LossRun[] }> {
  matrix ??= (async () => {
    const v1 = cases.map((c) => () => withLostTask(c.kind, c.dieAfter, c.cancel));
    const v2 = v2Cases.map((c) => () => withLostTask('completes', c.dieAfter, c.cancel, 'orderSagaV2'));
    const done = await atMost(6, [...v1, ...v2]);
    return { v1: done.slice(0, v1.length), v2: done.slice(v1.length) };
  })();
  return matrix;
}

describe('a workflow task lost after local steps committed: the retry decides as the lost task did', () => {
  let baselines: Record<Kind, unknown>;
  let runs: Map<string, LossRun>;
  const name = (c: { kind: Kind; dieAfter: string; cancel: boolean }) => `${c.kind}/${c.dieAfter}${c.cancel ? '+cancel' : ''}`;

  beforeAll(async () => {
    // The last describe's runs go beside this matrix: theirs mostly wait too. Awaited (and any
    // failure of theirs reported) there.
    answeredStepRuns().catch(() => undefined);
    const kinds = Object.keys(LOSS_POINTS) as Kind[];
    const base = await Promise.all(kinds.map((k) => baseline(k)));
    baselines = Object.fromEntries(kinds.map((k, i) => [k, base[i]])) as Record<Kind, unknown>;
    const done = (await lossRuns()).v1;
    runs = new Map(cases.map((c, i) => [name(c), done[i]!]));
  });

  test('the runs without a loss end as designed', () => {
    expect(baselines.completes).toMatchObject({
      result: { status: 'completed', completedSteps: Object.values(Step) },
      order: { status: 'completed', failure_reason: null },
      stock: { on_hand: 8, reserved: 0 },
      payments: [{ status: 'captured' }],
    });
    expect(baselines['out-of-stock']).toMatchObject({
      result: {
        status: 'compensated',
        failure: { type: 'OutOfStock' },
        completedSteps: [Step.recordOrder],
        compensations: [[Step.reserveInventory, 'done'], [Step.recordOrder, 'done']],
      },
      order: { status: 'failed', failure_reason: 'OutOfStock: out of stock: <sku>' },
      stock: { on_hand: 1, reserved: 0 },
    });
    expect(baselines.fraud).toMatchObject({
      result: {
        status: 'compensated',
        failure: { type: 'FraudSuspected' },
        completedSteps: [Step.recordOrder, Step.reserveInventory],
        compensations: [[Step.fraudCheck, 'done'], [Step.reserveInventory, 'done'], [Step.recordOrder, 'done']],
      },
      order: { status: 'failed', failure_reason: expect.stringMatching(/^FraudSuspected: fraud suspected/) },
      stock: { on_hand: 10, reserved: 0 },
      fraud: [],
    });
  });

  test.each(cases.filter((c) => !c.cancel).map((c) => [name(c), c] as const))('%s: the same outcome, reason, steps and rows as without the loss', (n) => {
    const run = runs.get(n)!;
    expect(run.snapshot).toEqual(baselines[n.split('/')[0] as Kind]);
  });

  test.each(cases.filter((c) => c.cancel && c.kind !== 'completes').map((c) => [name(c), c] as const))(
    '%s: the cancel is refused for the failure the lost task met, and nothing else changes',
    (n, c) => {
      const run = runs.get(n)!;
      const failure = c.kind === 'fraud' ? 'FraudSuspected' : 'OutOfStock';
      // Refused by the saga's answer (the failure met again) or, where a heartbeat of the long task had
      // already put the compensation in history before the loss, by its validator.
      expect(run.cancel).toMatch(new RegExp(`^refused: (the saga is already compensating for ${failure}|saga already compensating$)`));
      expect(run.snapshot).toEqual(baselines[c.kind]);
    },
  );

  test.each(cases.filter((c) => c.cancel && c.kind === 'completes').map((c) => [name(c), c] as const))(
    '%s: the cancel is honoured: every committed step undone, the charge abandoned and tombstoned',
    (n) => {
      const run = runs.get(n)!;
      const cause = { cancelled: true, failure: { type: 'SagaCancelled', message: 'changed my mind' } };
      expect(run.cancel).toBe('accepted');
      expect(run.snapshot).toEqual({
        result: {
          status: 'cancelled',
          failure: cause.failure,
          completedSteps: [Step.recordOrder, Step.reserveInventory, Step.fraudCheck],
          compensations: [Step.chargePayment, Step.fraudCheck, Step.reserveInventory, Step.recordOrder].map((s) => [s, 'done']),
        },
        order: { status: 'cancelled', failure_reason: 'SagaCancelled: changed my mind' },
        ledger: [
          { key: Step.chargePayment, state: 'cancelled', undone: null, cause },
          { key: `${Step.chargePayment}/undo`, state: 'completed', undone: null, cause: null },
          { key: Step.fraudCheck, state: 'cancelled', undone: 'completed', cause },
          { key: `${Step.fraudCheck}/undo`, state: 'completed', undone: null, cause: null },
          { key: Step.recordOrder, state: 'cancelled', undone: 'completed', cause },
          { key: `${Step.recordOrder}/undo`, state: 'completed', undone: null, cause: null },
          { key: Step.reserveInventory, state: 'cancelled', undone: 'completed', cause },
          { key: `${Step.reserveInventory}/undo`, state: 'completed', undone: null, cause: null },
        ],
        stock: { on_hand: 10, reserved: 0 },
        reservations: [{ status: 'released' }],
        fraud: [{ decision: 'approved', status: 'voided' }],
        payments: [],
      });
    },
  );
});

/**
 * orderSagaV2 runs every step as a local activity, the charge and the label too: a task can be lost
 * after any of them committed, the provider's and carrier's calls included. Where the lost task had
 * started the charge, a cancel that comes with the retry lets the charge's ledger answer and refunds
 * it; where it had started the label (the pivot), the cancel is refused, as it would have been had it
 * come after that task.
 */
describe('orderSagaV2: a workflow task lost after any step committed, the charge and the label included', () => {
  const name = (c: { dieAfter: string; cancel: boolean }) => `${c.dieAfter}${c.cancel ? '+cancel' : ''}`;
  let base: unknown;
  let runs: Map<string, LossRun>;

  beforeAll(async () => {
    base = await baseline('completes', 'orderSagaV2');
    const done = (await lossRuns()).v2;
    runs = new Map(v2Cases.map((c, i) => [name(c), done[i]!]));
  });

  test('the run without a loss completes', () => {
    expect(base).toMatchObject({ result: { status: 'completed', completedSteps: Object.values(Step) }, payments: [{ status: 'captured' }] });
  });

  test.each(v2Cases.filter((c) => !c.cancel).map((c) => [name(c)] as const))('%s: the same outcome and rows as without the loss, one charge and one label', (n) => {
    expect(runs.get(n)!.snapshot).toEqual(base);
  });

  test.each(['createShipment+cancel', 'completeOrder+cancel'])('%s: the lost task had started the pivot, so the cancel is refused and nothing changes', (n) => {
    const run = runs.get(n)!;
    expect(run.cancel).toBe('refused: past the point of no return: the pivot step has started');
    expect(run.snapshot).toEqual(base);
  });

  const cause = { cancelled: true, failure: { type: 'SagaCancelled', message: 'changed my mind' } };
  test.each(['checkFraud+cancel'])('%s: the cancel is honoured before the charge: nothing charged, every committed step undone', (n) => {
    const run = runs.get(n)!;
    expect(run.cancel).toBe('accepted');
    expect(run.snapshot).toMatchObject({
      result: {
        status: 'cancelled',
        completedSteps: [Step.recordOrder, Step.reserveInventory, Step.fraudCheck],
        compensations: [Step.chargePayment, Step.fraudCheck, Step.reserveInventory, Step.recordOrder].map((s) => [s, 'done']),
      },
      order: { status: 'cancelled' },
      stock: { on_hand: 10, reserved: 0 },
      payments: [],
    });
    expect((run.snapshot as { ledger: unknown[] }).ledger).toContainEqual({ key: Step.chargePayment, state: 'cancelled', undone: null, cause });
  });

  test('chargePayment+cancel: the lost task had charged, so the charge is answered from the ledger, refunded, and the label never made', () => {
    const run = runs.get('chargePayment+cancel')!;
    expect(run.cancel).toBe('accepted');
    expect(run.snapshot).toMatchObject({
      result: {
        status: 'cancelled',
        completedSteps: [Step.recordOrder, Step.reserveInventory, Step.fraudCheck, Step.chargePayment],
        compensations: [Step.createShipment, Step.chargePayment, Step.fraudCheck, Step.reserveInventory, Step.recordOrder].map((s) => [s, 'done']),
      },
      order: { status: 'cancelled' },
      stock: { on_hand: 10, reserved: 0 },
      payments: [{ status: 'refunded' }],
    });
    const ledger = (run.snapshot as { ledger: unknown[] }).ledger;
    expect(ledger).toContainEqual({ key: Step.createShipment, state: 'cancelled', undone: null, cause });
    expect(ledger).toContainEqual({ key: Step.chargePayment, state: 'cancelled', undone: 'completed', cause });
  });
});

/**
 * orderSagaV2 meeting, in a retried task, a failure the lost task never met, at a step that task had
 * passed: the charge's answer is in the ledger, but the retry is refused a turn at the payment
 * provider's rate limit (a bucket put in debt for the test) before it reads it, for about 15 s.
 * Compensating for that would decide differently from the lost task; the retry runs the charge again
 * until it reads the answer, and goes on as the lost task did:
 * - the label refused for good (400, not retried): the lost task had compensated the label and
 *   refunded the charge when it died. The retry unwinds for the carrier's refusal, every compensation
 *   listed, the order's reason the carrier's.
 * - the label made: the lost task died after the pivot. The retry completes the order (compensating
 *   would have refunded a charge for a parcel the carrier ships).
 */
type AnswerRun = 'refusedBase' | 'refusedLost' | 'shippedBase' | 'shippedLost';

// The carrier refuses the label once (400: not retried), so the whole saga up to the loss is one
// workflow task: no step takes long enough for the SDK to complete the task early.
const carrierRefuses = (o: OrderInput) =>
  addFault(ctx.carrier.url, { kind: 'error', status: 400, path: '/shipments', keyPrefix: `${orderWorkflowId(o.orderId)}/`, times: 1 });

async function answerRun(refused: boolean, dieAfter?: string): Promise<unknown> {
  const order = orderInput();
  const labels = async (snap: unknown) => ({
    ...(snap as object),
    shipments: (await ctx.db.query(`SELECT status FROM shipments WHERE order_id = $1`, [order.orderId])).rows,
  });
  await seedInventory(ctx.db, { [order.items[0]!.sku]: 10 });
  if (refused) await carrierRefuses(order);
  const queue = uniqueId(dieAfter ? 'lost' : 'lost-base');
  if (!dieAfter) {
    const stop = await worker(queue);
    try {
      return await labels(await snapshot(order, await (await start(order, queue, 'orderSagaV2')).result()));
    } finally {
      await stop();
    }
  }
  const limited = { ...ctx.deps, paymentsPerSecond: 0.1 };
  const lost = await runWithLostTask<OrderSagaResult>({
    dying: spawnNode('test/helpers/scripts/worker-dies-after-step.ts', { ...workerEnv(ctx, queue), DIE_AFTER_STEP: dieAfter, WORKFLOW_BUNDLE: bundlePath }, 'worker ready'),
    start: () => start(order, queue, 'orderSagaV2'),
    survivor: async () => {
      // The bucket one token in debt: at 0.1 tokens a second the retry's turns stay more than 5 s
      // away (refused) for 15 s, past the charge's 6 attempts (about 6 s of backoff). The two lost
      // runs share the bucket: the second one's reset only keeps the first refused longer.
      await ctx.db.query(
        `INSERT INTO ledger_rate_limits (name, tokens, updated_at) VALUES ($1, -1, clock_timestamp())
         ON CONFLICT (name) DO UPDATE SET tokens = -1, updated_at = clock_timestamp()`,
        [PAYMENT_PROVIDER_LIMIT],
      );
      const w = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue: queue, deps: limited, workflowBundle: { codePath: bundlePath } });
      return ctx.startWorker(w);
    },
  });
  return labels(await snapshot(order, lost.result));
}

let answerRuns: Promise<Record<AnswerRun, unknown>> | undefined;
/** The four runs, at once; started beside the loss matrix by the first describe (they mostly wait). */
function answeredStepRuns(): Promise<Record<AnswerRun, unknown>> {
  answerRuns ??= (async () => {
    const [refusedBase, shippedBase, refusedLost, shippedLost] = await Promise.all([
      answerRun(true),
      answerRun(false),
      answerRun(true, 'refundPayment'),
      answerRun(false, 'createShipment'),
    ]);
    return { refusedBase, shippedBase, refusedLost, shippedLost };
  })();
  return answerRuns;
}

describe('orderSagaV2: a retry that fails on the way to an answer the lost task got runs the step again and decides as that task did', () => {
  let runs: Record<AnswerRun, unknown>;

  beforeAll(async () => {
    runs = await answeredStepRuns();
  });

  test('without a loss: refused, the label never made and every step before it compensated; made, the order completes', () => {
    expect(runs.refusedBase).toMatchObject({
      result: {
        status: 'compensated',
        failure: { type: 'InvalidInput' },
        completedSteps: [Step.recordOrder, Step.reserveInventory, Step.fraudCheck, Step.chargePayment],
        compensations: [Step.createShipment, Step.chargePayment, Step.fraudCheck, Step.reserveInventory, Step.recordOrder].map((s) => [s, 'done']),
      },
      order: { status: 'failed', failure_reason: 'InvalidInput: carrier refused create-shipment with 400' },
      stock: { on_hand: 10, reserved: 0 },
      payments: [{ status: 'refunded' }],
      shipments: [{ status: 'voided' }],
    });
    expect(runs.shippedBase).toMatchObject({
      result: { status: 'completed', completedSteps: Object.values(Step) },
      payments: [{ status: 'captured' }],
      shipments: [{ status: 'created' }],
    });
  });

  test('lost after the refund, the retry held at the charge: the same outcome, reason, compensations and rows', () => {
    expect(runs.refusedLost).toEqual(runs.refusedBase);
  });

  test('lost after the label, the retry held at the charge: the order completes, one charge and one label, nothing refunded', () => {
    expect(runs.shippedLost).toEqual(runs.shippedBase);
  });
});
