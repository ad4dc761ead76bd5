import { DBOS } from '@dbos-inc/dbos-sdk';
import { activitiesBySystem, type ActivityDeps } from '../../activities';
import { quoteIdent } from '../../src/db/pool';
import { sagaKeys } from '@sagaflow/toolkit/workflow';
import type { Ledger, StepLedger } from '@sagaflow/toolkit/ledger';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { passThroughLedger, runStatement, undoContext } from './activities';
import { PgDataSource } from './dbos-datasource';

/**
 * A ledger for the steps' code on DBOS, as DBOS recommends writing them: a local step's effect
 * runs as a DBOS transaction (its rows and DBOS's checkpoint of it in one commit, on the data
 * source's client), an external step (prepare, the provider's or carrier's call, confirm, as the
 * pass-through ledger does them) as a DBOS step. There is no sagaflow ledger row, as in the naive
 * saga: DBOS's own checkpoints are what make each step happen once.
 */
export function dbosLedger(ds: PgDataSource, base: Ledger): Ledger {
  return {
    step(name): StepLedger {
      const plain = base.step(name);
      return {
        step: name,
        local: (_key, _input, effect) => ds.runTransaction(() => effect(ds.client), name),
        localStatement: (_key, _input, plan) =>
          ds.runTransaction(async () => {
            const { statement, result } = plan();
            await runStatement(ds.client, statement);
            return result;
          }, name),
        localUndo: (key, _input, undo) => ds.runTransaction(() => undo(ds.client, undoContext(key) as never), `${name}/undo`),
        external: (key, input, s) => DBOS.runStep(() => plain.external(key, input, s), { name }),
        externalUndo: (key, input, u) => DBOS.runStep(() => plain.externalUndo(key, input, u), { name: `${name}/undo` }),
        abandon: (key, input) => plain.abandon(key, input),
      };
    },
    read: base.read,
  };
}

/**
 * The same saga on DBOS Transact: the order saga's six steps, each the same activity code
 * writing the same rows on the same PostgreSQL and calling the same provider and carrier, as one
 * DBOS workflow (the database steps DBOS transactions, the calls DBOS steps: dbosLedger). DBOS
 * checkpoints in its system database (a database of its own on the same server) and, for
 * transactions, in the application database's `dbos` schema.
 */
export async function startDbosVariant(
  opts: { systemDatabaseUrl: string; databaseUrl: string },
  deps: ActivityDeps,
): Promise<{ run(order: OrderInput, workflowId: string): Promise<void>; stop(): Promise<void> }> {
  const ds = new PgDataSource('app', { connectionString: opts.databaseUrl, max: 10 });
  const s = activitiesBySystem(deps, dbosLedger(ds, passThroughLedger(deps.db)));
  const workflow = DBOS.registerWorkflow(
    async (order: OrderInput, workflowId: string) => {
      const keys = sagaKeys(workflowId);
      const { orderId } = order;
      await s.orders.recordOrder({ key: keys.step(Step.recordOrder), order });
      await s.inventory.reserveInventory({ key: keys.step(Step.reserveInventory), orderId, items: order.items });
      await s.orders.checkFraud({ key: keys.step(Step.fraudCheck), orderId, amount: order.amount, paymentToken: order.paymentToken });
      await s.payments.chargePayment({ key: keys.step(Step.chargePayment), orderId, amount: order.amount, paymentToken: order.paymentToken });
      await s.shipping.createShipment({ key: keys.step(Step.createShipment), orderId, address: order.shippingAddress, items: order.items });
      await s.orders.completeOrder({ key: keys.step(Step.completeOrder), orderId });
    },
    { name: 'dbosOrderSaga' },
  );
  DBOS.setConfig({ name: 'sagaflow-bench', systemDatabaseUrl: opts.systemDatabaseUrl, logLevel: 'warn' });
  await DBOS.launch();
  return {
    async run(order, workflowId) {
      const handle = await DBOS.startWorkflow(workflow, { workflowID: workflowId })(order, workflowId);
      await handle.getResult();
    },
    async stop() {
      await DBOS.shutdown();
      // The system database is this run's own: it goes with it.
      const name = new URL(opts.systemDatabaseUrl).pathname.slice(1);
      await deps.db.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    },
  };
}
