import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { withClient, type Db } from '../src/db/pool';
import { startOrderSaga } from '../src/orders/start';
import { insertOrder } from '../src/orders/repository';
import { addFault } from './services/clients';
import { cancelUpdate, statusQuery, type OrderSagaWorkflow } from '../workflows/order/definitions';
import { sagaResolveUpdate, sagaRetryCompensationUpdate, type SagaStatus } from '@sagaflow/toolkit/workflow';
import { EXTERNAL_STEP_ATTEMPTS } from '../workflows/order/activity-options';
import type { OrderInput } from '../workflows/order/types';

/** The order saga's committed histories: written by npm run histories:capture, replayed by the gate in npm test. */
export const ORDER_HISTORIES_DIR = path.resolve(__dirname, '../test/replay/histories');

export interface ScenarioContext {
  client: Client;
  db: Db;
  taskQueue: string;
  paymentProviderUrl: string;
  carrierUrl: string;
}

type Handle = WorkflowHandle<OrderSagaWorkflow>;

interface Scenario {
  name: string;
  run(ctx: ScenarioContext, order: OrderInput): Promise<Handle>;
}

const prefix = (o: OrderInput) => `order-${o.orderId}/`;
/**
 * The carrier down through every attempt of the shipment step, then back: the step fails for good, and
 * its undo can ask for the label again under its key (a real carrier keeps nothing for a key it never saw).
 */
const carrierOutage = (o: OrderInput) => ({ kind: 'error', path: '/shipments', keyPrefix: prefix(o), times: EXTERNAL_STEP_ATTEMPTS });
const start = (ctx: ScenarioContext, o: OrderInput) => startOrderSaga(ctx.client, o, ctx.taskQueue);
/**
 * A saga whose cancel comes while a step runs. An orderSagaV2 runs its steps in one workflow task and
 * sees a cancel when the SDK heartbeats that task (at 80% of its timeout): a 2 s timeout makes that
 * 1.6 s, within the step's 2.5 s latency below.
 */
const startForCancel = (ctx: ScenarioContext, o: OrderInput) => startOrderSaga(ctx.client, o, ctx.taskQueue, { workflowTaskTimeout: '2s' });
const STEP_LATENCY_MS = 2500;

/** Waits until the step's own row (payments, shipments) exists: its call is under way. Read from the database, as a query is not answered while the steps' task runs. */
async function waitForRow(ctx: ScenarioContext, table: 'payments' | 'shipments', o: OrderInput) {
  for (let i = 0; i < 400; i++) {
    if ((await ctx.db.query(`SELECT 1 FROM ${table} WHERE order_id = $1`, [o.orderId])).rowCount) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`order ${o.orderId}: no ${table} row appeared`);
}

async function waitForStatus(handle: Handle, pred: (s: SagaStatus) => boolean, rounds = 400) {
  for (let i = 0; i < rounds; i++) {
    const s = await handle.query(statusQuery);
    if (pred(s)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${handle.workflowId} never reached the awaited status`);
}

/** Waits until a statement waits on a lock (record-order's claim behind the scenario's table lock). */
async function waitForLockWait(db: Db) {
  for (let i = 0; i < 400; i++) {
    if ((await db.query(`SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'step_ledger'::regclass`)).rowCount) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no step waited on the ledger lock');
}

/** Every path a saga can take, each ending in a recorded history worth replaying. */
export const scenarios: Scenario[] = [
  { name: 'success', run: start },
  {
    name: 'fail-record-order',
    async run(ctx, o) {
      // Another order already holds the ID with other contents.
      await withClient(ctx.db, (client) => insertOrder(client, { ...o, customerId: 'someone-else' }, { workflowId: `other-${o.orderId}`, sagaStarted: true }));
      return start(ctx, o);
    },
  },
  { name: 'fail-reserve-inventory', run: (ctx, o) => start(ctx, { ...o, items: [{ sku: o.items[0]!.sku, quantity: 999 }] }) },
  { name: 'fail-fraud-check', run: (ctx, o) => start(ctx, { ...o, paymentToken: 'tok_fraud' }) },
  { name: 'fail-charge-payment', run: (ctx, o) => start(ctx, { ...o, paymentToken: 'tok_decline' }) },
  {
    name: 'fail-create-shipment',
    async run(ctx, o) {
      await addFault(ctx.carrierUrl, carrierOutage(o));
      return start(ctx, o);
    },
  },
  {
    name: 'cancel-before-pivot',
    async run(ctx, o) {
      await addFault(ctx.paymentProviderUrl, { kind: 'latency', latency_ms: STEP_LATENCY_MS, keyPrefix: prefix(o), path: '/charges' });
      const handle = await startForCancel(ctx, o);
      await waitForRow(ctx, 'payments', o);
      await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'customer cancelled' }] });
      return handle;
    },
  },
  {
    name: 'temporal-cancel-before-pivot',
    async run(ctx, o) {
      // What `temporal workflow cancel` does: no update, the run's scope cancelled. It is a cancel all
      // the same: the charge in flight is abandoned and undone, and the saga ends cancelled.
      await addFault(ctx.paymentProviderUrl, { kind: 'latency', latency_ms: STEP_LATENCY_MS, keyPrefix: prefix(o), path: '/charges' });
      const handle = await startForCancel(ctx, o);
      await waitForRow(ctx, 'payments', o);
      await handle.cancel();
      return handle;
    },
  },
  {
    name: 'cancel-during-local-step',
    async run(ctx, o) {
      // The ledger locked: record-order (a local activity) waits at its claim while the cancel
      // arrives. The saga's local steps run on through the cancel, and it stops at the charge; the
      // cancel is answered once they have run (it stands: none of them failed).
      const lock = await ctx.db.connect();
      let cancel: Promise<unknown> | undefined;
      let handle;
      try {
        await lock.query('BEGIN');
        await lock.query('LOCK TABLE step_ledger IN EXCLUSIVE MODE');
        handle = await startForCancel(ctx, o);
        await waitForLockWait(ctx.db);
        cancel = handle.executeUpdate(cancelUpdate, { args: [{ reason: 'customer cancelled at once' }] });
        // The cancel reaches the saga with the step's task's heartbeat (1.6 s) at the latest.
        await new Promise((r) => setTimeout(r, STEP_LATENCY_MS));
      } finally {
        await lock.query('COMMIT');
        lock.release();
      }
      await cancel;
      return handle;
    },
  },
  {
    name: 'cancel-refused-after-pivot',
    async run(ctx, o) {
      await addFault(ctx.carrierUrl, { kind: 'latency', latency_ms: STEP_LATENCY_MS, keyPrefix: prefix(o), path: '/shipments' });
      const handle = await startForCancel(ctx, o);
      await waitForRow(ctx, 'shipments', o);
      const refused = await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'too late' }] }).then(
        () => false,
        () => true,
      );
      if (!refused) throw new Error('cancel after the pivot was accepted');
      return handle;
    },
  },
  {
    name: 'compensation-retried',
    async run(ctx, o) {
      // The carrier is down through the shipment's attempts, and the refund fails for a full round of attempts before it succeeds.
      await addFault(ctx.carrierUrl, carrierOutage(o));
      await addFault(ctx.paymentProviderUrl, { kind: 'error', path: '/refunds', keyPrefix: prefix(o), times: 4 });
      return start(ctx, o);
    },
  },
  {
    name: 'compensation-failed',
    async run(ctx, o) {
      // The shipment fails for good, then the provider refuses the refund for good: the failure is written on the
      // order and the saga holds for an operator, who settles it by hand.
      await addFault(ctx.carrierUrl, carrierOutage(o));
      await addFault(ctx.paymentProviderUrl, { kind: 'error', status: 400, path: '/refunds', keyPrefix: prefix(o) });
      const handle = await start(ctx, o);
      await waitForStatus(handle, (s) => s.awaitingOperator === true, 4_000);
      await handle.executeUpdate(sagaResolveUpdate, { args: [{ by: 'cli:replay-capture', note: 'settled by hand' }] });
      return handle;
    },
  },
  {
    name: 'compensation-retried-by-operator',
    async run(ctx, o) {
      // As above, but the refund is refused twice: an operator's first retry fails again, the second refunds.
      await addFault(ctx.carrierUrl, carrierOutage(o));
      await addFault(ctx.paymentProviderUrl, { kind: 'error', status: 400, path: '/refunds', keyPrefix: prefix(o), times: 2 });
      const handle = await start(ctx, o);
      await waitForStatus(handle, (s) => s.awaitingOperator === true, 4_000);
      for (let round = 1; round <= 2; round++) {
        await handle.executeUpdate(sagaRetryCompensationUpdate, { args: [{ by: 'cli:replay-capture', note: `round ${round}` }] });
      }
      return handle;
    },
  },
  {
    name: 'duplicate-start',
    async run(ctx, o) {
      const first = await start(ctx, o);
      const second = await start(ctx, o);
      if (second.workflowId !== first.workflowId) throw new Error('the second start did not attach');
      return first;
    },
  },
];

/** Runs every scenario at once; returns workflow ID → scenario name once all sagas have ended. */
export async function runScenarios(ctx: ScenarioContext, label: string): Promise<Map<string, string>> {
  const suffix = randomBytes(3).toString('hex');
  const run = await Promise.all(
    scenarios.map(async (s) => {
      const sku = `${label}-${s.name}-${suffix}`;
      await ctx.db.query('INSERT INTO inventory (sku, on_hand) VALUES ($1, 10)', [sku]);
      const order: OrderInput = {
        orderId: `${label}-${s.name}-${suffix}`,
        customerId: 'cust-replay',
        items: [{ sku, quantity: 2 }],
        amount: { amountMinor: 2_500, currency: 'EUR' },
        paymentToken: 'tok_visa',
        shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
      };
      const handle = await s.run(ctx, order);
      await handle.result().catch(() => undefined);
      return [handle.workflowId, s.name] as const;
    }),
  );
  return new Map(run);
}
