import { DBOS } from '@dbos-inc/dbos-sdk';
import { activitiesBySystem, type ActivityDeps } from '../../activities';
import { quoteIdent } from '../../src/db/pool';
import { sagaKeys } from '@sagaflow/toolkit/workflow';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { passThroughLedger } from './activities';

/**
 * The same saga on DBOS Transact: the order saga's six steps, each the same
 * activity code writing the same rows on the same PostgreSQL and calling the
 * same provider and carrier, as DBOS steps of one DBOS workflow. DBOS
 * checkpoints each step's output in its system database (a database of its
 * own on the same server); there is no sagaflow ledger here, as in the naive saga.
 */
export async function startDbosVariant(
  systemDatabaseUrl: string,
  deps: ActivityDeps,
): Promise<{ run(order: OrderInput, workflowId: string): Promise<void>; stop(): Promise<void> }> {
  const s = activitiesBySystem(deps, passThroughLedger(deps.db));
  const workflow = DBOS.registerWorkflow(
    async (order: OrderInput, workflowId: string) => {
      const keys = sagaKeys(workflowId);
      const { orderId } = order;
      const step = <T>(name: string, fn: () => Promise<T>) => DBOS.runStep(fn, { name });
      await step(Step.recordOrder, () => s.orders.recordOrder({ key: keys.step(Step.recordOrder), order }));
      await step(Step.reserveInventory, () => s.inventory.reserveInventory({ key: keys.step(Step.reserveInventory), orderId, items: order.items }));
      await step(Step.fraudCheck, () =>
        s.orders.checkFraud({ key: keys.step(Step.fraudCheck), orderId, amount: order.amount, paymentToken: order.paymentToken }),
      );
      await step(Step.chargePayment, () =>
        s.payments.chargePayment({ key: keys.step(Step.chargePayment), orderId, amount: order.amount, paymentToken: order.paymentToken }),
      );
      await step(Step.createShipment, () =>
        s.shipping.createShipment({ key: keys.step(Step.createShipment), orderId, address: order.shippingAddress, items: order.items }),
      );
      await step(Step.completeOrder, () => s.orders.completeOrder({ key: keys.step(Step.completeOrder), orderId }));
    },
    { name: 'dbosOrderSaga' },
  );
  DBOS.setConfig({ name: 'sagaflow-bench', systemDatabaseUrl });
  await DBOS.launch();
  return {
    async run(order, workflowId) {
      const handle = await DBOS.startWorkflow(workflow, { workflowID: workflowId })(order, workflowId);
      await handle.getResult();
    },
    async stop() {
      await DBOS.shutdown();
      // The system database is this run's own: it goes with it.
      const name = new URL(systemDatabaseUrl).pathname.slice(1);
      await deps.db.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    },
  };
}
