import { proxyActivities, proxyLocalActivities, workflowInfo, type ActivityOptions } from '@temporalio/workflow';
import type { SagaActivities } from '../../activities';
import { compensationRound, externalStep, localDatabaseStep, localDatabaseUndo, localStep } from '../../workflows/order/activity-options';
import { queueName, type ActivitySystem } from '../../workflows/order/queues';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { sagaKeys } from '@sagaflow/toolkit/workflow';

function system(role: ActivitySystem, options: ActivityOptions) {
  return proxyActivities<SagaActivities>({ ...options, taskQueue: queueName(workflowInfo().taskQueue, role) });
}

/**
 * A saga as the Temporal samples write one: the order saga's six activities in
 * sequence and a list of compensations run in reverse on failure; no saga
 * helper, no search attributes. Every activity is a remote one on its system's
 * queue, as in the samples.
 * With the real activities minus the ledger, it is the naive saga.
 */
export async function naiveSaga(order: OrderInput): Promise<{ status: 'completed' | 'compensated' }> {
  const remote = {
    orders: system('orders', localStep),
    inventory: system('inventory', localStep),
    payments: system('payments', externalStep),
    shipping: system('shipping', externalStep),
  };
  const undo = { orders: system('orders', compensationRound), inventory: system('inventory', compensationRound), payments: system('payments', compensationRound) };
  return runSampleSaga(order, remote, undo);
}

/**
 * The samples' shape with the order saga's kinds of activity: its database-only
 * steps as local activities, the others on their queues with the same options.
 * With no-op activities it is the engine floor; with the real activities minus
 * the ledger, it shows what the ledger alone costs (variant no-ledger).
 */
export async function sampleSaga(order: OrderInput): Promise<{ status: 'completed' | 'compensated' }> {
  const inWorker = proxyLocalActivities<SagaActivities>(localDatabaseStep);
  const undoInWorker = proxyLocalActivities<SagaActivities>(localDatabaseUndo);
  return runSampleSaga(
    order,
    { orders: inWorker, inventory: inWorker, payments: system('payments', externalStep), shipping: system('shipping', externalStep) },
    { orders: undoInWorker, inventory: undoInWorker, payments: system('payments', compensationRound) },
  );
}

/**
 * Every step a local activity of the workflow worker, the payment and the shipment included:
 * the six steps run in one workflow task, as the order saga's all-local shape (orderSagaV2) does.
 * With no-op activities it is the floor of that shape (variant floor-local).
 */
export async function allLocalSaga(order: OrderInput): Promise<{ status: 'completed' | 'compensated' }> {
  const inWorker = proxyLocalActivities<SagaActivities>(localDatabaseStep);
  const undoInWorker = proxyLocalActivities<SagaActivities>(localDatabaseUndo);
  return runSampleSaga(
    order,
    { orders: inWorker, inventory: inWorker, payments: inWorker, shipping: inWorker },
    { orders: undoInWorker, inventory: undoInWorker, payments: undoInWorker },
  );
}

type Proxies = Record<ActivitySystem, SagaActivities>;

async function runSampleSaga(
  order: OrderInput,
  forward: Proxies,
  undo: Pick<Proxies, 'orders' | 'inventory' | 'payments'>,
): Promise<{ status: 'completed' | 'compensated' }> {
  const keys = sagaKeys(workflowInfo().workflowId);
  const { orderId } = order;
  const compensations: (() => Promise<unknown>)[] = [];
  try {
    compensations.unshift(() =>
      undo.orders.cancelOrder({ key: keys.undo(Step.recordOrder), orderId, status: 'failed', reason: 'compensated' }),
    );
    await forward.orders.recordOrder({ key: keys.step(Step.recordOrder), order });
    compensations.unshift(() => undo.inventory.releaseInventory({ key: keys.undo(Step.reserveInventory), orderId }));
    await forward.inventory.reserveInventory({ key: keys.step(Step.reserveInventory), orderId, items: order.items });
    compensations.unshift(() => undo.orders.voidFraudCheck({ key: keys.undo(Step.fraudCheck), orderId }));
    await forward.orders.checkFraud({ key: keys.step(Step.fraudCheck), orderId, amount: order.amount, paymentToken: order.paymentToken });
    compensations.unshift(() => undo.payments.refundPayment({ key: keys.undo(Step.chargePayment), orderId }));
    await forward.payments.chargePayment({ key: keys.step(Step.chargePayment), orderId, amount: order.amount, paymentToken: order.paymentToken });
    await forward.shipping.createShipment({ key: keys.step(Step.createShipment), orderId, address: order.shippingAddress, items: order.items });
    await forward.orders.completeOrder({ key: keys.step(Step.completeOrder), orderId });
    return { status: 'completed' };
  } catch {
    for (const compensate of compensations) await compensate();
    return { status: 'compensated' };
  }
}
