import { proxyActivities, proxyLocalActivities, workflowInfo, type ActivityOptions } from '@temporalio/workflow';
import type { SagaActivities } from '../../activities';
import { compensationRound, externalStep, localDatabaseStep, localDatabaseUndo } from '../../workflows/order/activity-options';
import { queueName, type ActivitySystem } from '../../workflows/order/queues';
import { Step } from '../../workflows/order/steps';
import type { OrderInput } from '../../workflows/order/types';
import { sagaKeys } from '../../workflows/saga/keys';

function system(role: ActivitySystem, options: ActivityOptions) {
  return proxyActivities<SagaActivities>({ ...options, taskQueue: queueName(workflowInfo().taskQueue, role) });
}

/**
 * A saga as the Temporal samples write one: the order saga's six activities in
 * sequence, of the same kinds (local or on the same queues) with the same options, and a list of
 * compensations run in reverse on failure; no saga helper, no search
 * attributes. With no-op activities it is the engine floor; with the real
 * activities minus the ledger, the naive saga.
 */
export async function sampleSaga(order: OrderInput): Promise<{ status: 'completed' | 'compensated' }> {
  const keys = sagaKeys(workflowInfo().workflowId);
  const { orderId } = order;
  // The same kinds of activity as the order saga: its database-only steps are local activities.
  const inWorker = proxyLocalActivities<SagaActivities>(localDatabaseStep);
  const local = { orders: inWorker, inventory: inWorker };
  const external = { payments: system('payments', externalStep), shipping: system('shipping', externalStep) };
  const undoInWorker = proxyLocalActivities<SagaActivities>(localDatabaseUndo);
  const undo = { orders: undoInWorker, inventory: undoInWorker, payments: system('payments', compensationRound) };
  const compensations: (() => Promise<unknown>)[] = [];
  try {
    compensations.unshift(() =>
      undo.orders.cancelOrder({ key: keys.undo(Step.recordOrder), orderId, status: 'failed', reason: 'compensated' }),
    );
    await local.orders.recordOrder({ key: keys.step(Step.recordOrder), order });
    compensations.unshift(() => undo.inventory.releaseInventory({ key: keys.undo(Step.reserveInventory), orderId }));
    await local.inventory.reserveInventory({ key: keys.step(Step.reserveInventory), orderId, items: order.items });
    compensations.unshift(() => undo.orders.voidFraudCheck({ key: keys.undo(Step.fraudCheck), orderId }));
    await local.orders.checkFraud({ key: keys.step(Step.fraudCheck), orderId, amount: order.amount, paymentToken: order.paymentToken });
    compensations.unshift(() => undo.payments.refundPayment({ key: keys.undo(Step.chargePayment), orderId }));
    await external.payments.chargePayment({ key: keys.step(Step.chargePayment), orderId, amount: order.amount, paymentToken: order.paymentToken });
    await external.shipping.createShipment({ key: keys.step(Step.createShipment), orderId, address: order.shippingAddress, items: order.items });
    await local.orders.completeOrder({ key: keys.step(Step.completeOrder), orderId });
    return { status: 'completed' };
  } catch {
    for (const compensate of compensations) await compensate();
    return { status: 'compensated' };
  }
}
