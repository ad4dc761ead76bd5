import { ApplicationFailure } from '@temporalio/common';
import type { activitiesBySystem } from '../../activities';
import { inTransaction, type Db } from '../../src/db/pool';
import type { ExternalStep, ExternalUndo, ForwardOutcome, Ledger, Statement, StepLedger, Tx, UndoContext } from '@sagaflow/toolkit/ledger';

type Systems = ReturnType<typeof activitiesBySystem>;

const completedForward: ForwardOutcome = { state: 'completed', result: null };

/**
 * What a compensation is handed on a ledger that records nothing: its key, the forward key it
 * undoes, and the forward step as completed with no result.
 */
export function undoContext(key: string): UndoContext {
  return { key, forwardKey: key.replace(/\/undo$/, ''), forward: completedForward };
}

/** Sends one statement, with its parameters, on a transaction's client. */
export function runStatement(tx: Tx, statement: Statement): Promise<unknown> {
  return tx.query(statement.text, statement.values as unknown[] | undefined);
}

/**
 * A ledger that records nothing: each local effect in a plain transaction,
 * each external call between its prepare and confirm (or their statements), no claim, no
 * fingerprint, no tombstone. The order activities on it write exactly the same
 * business rows as on the real ledger: the naive saga's cost.
 */
export function passThroughLedger(db: Db): Ledger {
  const step = (name: string): StepLedger => ({
    step: name,
    local: (_key, _input, effect) => inTransaction(db, effect),
    localStatement: (_key, _input, plan) =>
      inTransaction(db, async (tx) => {
        const { statement, result } = plan();
        await runStatement(tx, statement);
        return result;
      }),
    localUndo: (key, _input, undo) => inTransaction(db, (tx) => undo(tx, undoContext(key) as never)),
    async external<R>(_key: string, _input: unknown, s: ExternalStep<R>) {
      if (s.prepare || s.prepareStatement) {
        await inTransaction(db, async (tx) => {
          await s.prepare?.(tx);
          if (s.prepareStatement) await runStatement(tx, s.prepareStatement);
        });
      }
      const outcome = await s.call();
      const confirmed = s.confirmStatement?.(outcome);
      await inTransaction(db, async (tx) => {
        await s.confirm?.(tx, outcome);
        if (confirmed) await runStatement(tx, confirmed);
      });
      if (!outcome.ok) throw ApplicationFailure.nonRetryable(outcome.failure.message, outcome.failure.type);
      return outcome.result;
    },
    async externalUndo<R, F>(key: string, _input: unknown, u: ExternalUndo<R, F>) {
      const ctx = undoContext(key) as never;
      const result = await u.call(ctx);
      const confirmed = u.confirmStatement?.(result, ctx);
      await inTransaction(db, async (tx) => {
        await u.confirm?.(tx, result, ctx);
        if (confirmed) await runStatement(tx, confirmed);
      });
      return result;
    },
    abandon: async () => true,
  });
  return { step, read: async () => [] };
}

/** The order saga's activities with no-op bodies, under the same names: the engine floor. */
export function noopActivities(): Systems {
  const ok = async () => ({});
  return {
    orders: {
      recordOrder: async (input: { order: { orderId: string } }) => ({ orderId: input.order.orderId }),
      cancelOrder: async () => ({ changed: false }),
      completeOrder: async () => ({ completed: true as const }),
      checkFraud: async () => ({ score: 0 }),
      voidFraudCheck: async () => ({ voided: false }),
    },
    inventory: { reserveInventory: async () => ({ reserved: [] }), releaseInventory: async () => ({ released: 0 }) },
    payments: { chargePayment: async () => ({ chargeId: 'ch_floor' }), refundPayment: async () => ({ status: 'refunded' }) },
    shipping: { createShipment: async () => ({ shipmentId: 'shp_floor', trackingNumber: 'TRK' }), voidShipment: ok as never },
  } as unknown as Systems;
}

/**
 * The no-op activities with the payment and the shipment among the orders' ones, so the workflow
 * worker (which takes the orders' and the inventory's activities as local ones) runs all six
 * steps locally: the floor of the all-local shape.
 */
export function noopAllLocalActivities(): Systems {
  const s = noopActivities();
  return { ...s, orders: { ...s.orders, ...s.payments, ...s.shipping } as Systems['orders'] };
}
