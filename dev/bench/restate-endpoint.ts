/**
 * The Restate variant's service endpoint (dev/bench/restate.ts spawns it; not for production):
 * the order saga's six steps, each the same activity code writing the same rows on the same
 * PostgreSQL (through the pass-through ledger, as the naive saga) and calling the same provider
 * and carrier, as ctx.run() calls of one Restate workflow keyed by the saga's workflow ID. Restate
 * journals each step's result in its log before the next runs.
 *
 * Needs DATABASE_URL, PAYMENT_PROVIDER_URL, CARRIER_URL and RESTATE_ENDPOINT_PORT. SIGTERM stops it.
 */
import * as restate from '@restatedev/restate-sdk';
import { activitiesBySystem } from '../../activities';
import { createPool } from '../../src/db/pool';
import { sagaKeys } from '@sagaflow/toolkit/workflow';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { passThroughLedger } from './activities';

export const RESTATE_WORKFLOW = 'benchOrderSaga';

/** The SDK uses Promise.withResolvers (Node.js 22); the project also runs on Node.js 20. */
function polyfillWithResolvers(): void {
  const P = Promise as unknown as { withResolvers?: () => unknown };
  P.withResolvers ??= <T>() => {
    let resolve!: (v: T | PromiseLike<T>) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

async function main(): Promise<void> {
  polyfillWithResolvers();
  const env = (name: string) => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set`);
    return v;
  };
  const db = createPool({ connectionString: env('DATABASE_URL'), max: 10 });
  const deps = { db, paymentProviderUrl: env('PAYMENT_PROVIDER_URL'), carrierUrl: env('CARRIER_URL'), providerTimeoutMs: 5000 };
  const s = activitiesBySystem(deps, passThroughLedger(db));
  // A failure no retry can fix (Temporal's nonRetryable ApplicationFailure) ends the saga, as there.
  const step = <T>(ctx: restate.WorkflowContext, name: string, fn: () => Promise<T>) =>
    ctx.run(name, async () => {
      try {
        return await fn();
      } catch (err) {
        if ((err as { nonRetryable?: boolean }).nonRetryable) throw new restate.TerminalError((err as Error).message);
        throw err;
      }
    });
  const saga = restate.workflow({
    name: RESTATE_WORKFLOW,
    handlers: {
      run: async (ctx: restate.WorkflowContext, order: OrderInput): Promise<{ status: 'completed' }> => {
        const keys = sagaKeys(ctx.key);
        const { orderId } = order;
        await step(ctx, Step.recordOrder, () => s.orders.recordOrder({ key: keys.step(Step.recordOrder), order }));
        await step(ctx, Step.reserveInventory, () => s.inventory.reserveInventory({ key: keys.step(Step.reserveInventory), orderId, items: order.items }));
        await step(ctx, Step.fraudCheck, () =>
          s.orders.checkFraud({ key: keys.step(Step.fraudCheck), orderId, amount: order.amount, paymentToken: order.paymentToken }),
        );
        await step(ctx, Step.chargePayment, () =>
          s.payments.chargePayment({ key: keys.step(Step.chargePayment), orderId, amount: order.amount, paymentToken: order.paymentToken }),
        );
        await step(ctx, Step.createShipment, () =>
          s.shipping.createShipment({ key: keys.step(Step.createShipment), orderId, address: order.shippingAddress, items: order.items }),
        );
        await step(ctx, Step.completeOrder, () => s.orders.completeOrder({ key: keys.step(Step.completeOrder), orderId }));
        return { status: 'completed' };
      },
    },
  });
  await restate.serve({ services: [saga], port: Number(env('RESTATE_ENDPOINT_PORT')) });
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await db.end();
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
