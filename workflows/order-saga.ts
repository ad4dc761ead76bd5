import {
  patched,
  proxyActivities,
  proxyLocalActivities,
  proxySinks,
  ActivityCancellationType,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityOptions,
  type LocalActivityOptions,
} from '@temporalio/workflow';
import type { SagaMetricsSinks } from './order/metrics-sinks';
import { CurrentStepKey, OrderIdKey, SagaStatusKey } from './order/search-attributes';
import type { SagaActivities } from '../activities';
import { describeFailure, Saga, sagaKeys, type CompensationContext } from '@sagaflow/toolkit/workflow';
import { queueName, type ActivitySystem } from './order/queues';
import {
  compensationRound,
  externalStep,
  localDatabaseStep,
  localDatabaseUndo,
  localExternalStep,
  localExternalUndo,
  localStep,
} from './order/activity-options';
import { Step } from './order/steps';
import type { OrderInput, OrderSagaResult } from './order/types';
import { cancelUpdate, statusQuery, type OrderSagaWorkflow } from './order/definitions';

export const FRAUD_CHECK_PATCH = 'fraud-check-before-payment';
export const SEARCH_ATTRIBUTES_PATCH = 'publish-search-attributes';
export const PHASE_ONLY_SEARCH_ATTRIBUTES_PATCH = 'search-attributes-on-phase-change';
export const LOCAL_DATABASE_STEPS_PATCH = 'database-steps-as-local-activities';
export const WAIT_FOR_CANCELLED_ACTIVITIES_PATCH = 'wait-for-cancelled-activities';
export const RECORD_COMPENSATION_FAILURES_PATCH = 'record-compensation-failures';

/**
 * How long a saga whose compensation failed for good waits for an operator to retry it or settle
 * it by hand (docs/runbook.md) before it fails as CompensationFailed with the step left done.
 */
export const OPERATOR_HOLD_MS = 30 * 24 * 3600_000;

// The definitions live in the contract (order/definitions.ts); re-exported for the callers that
// already load the body (tests, the replay scenarios).
export { statusQuery, cancelUpdate };

/** Activity stubs for one system, on that system's task queue. */
function system(role: ActivitySystem, options: ActivityOptions) {
  return proxyActivities<SagaActivities>({ ...options, taskQueue: queueName(workflowInfo().taskQueue, role) });
}

/**
 * The order saga's first workflow type. Its runs took up each change behind patched(), so its
 * history carries a marker per rule; its payment and shipment run on their systems' task queues.
 * New sagas start as orderSagaV2; this one stays for the runs already in flight (docs/versioning.md).
 */
export async function orderSaga(order: OrderInput): Promise<OrderSagaResult> {
  return runOrderSaga(order, false);
}

/**
 * The order saga as it starts today: every rule applies without a patch marker, and every step runs
 * as a local activity in the workflow's worker, each still through the ledger (an external call
 * pending → call → confirmed under its Idempotency-Key), so a saga is one workflow task. A worker
 * that dies mid-step is noticed by the workflow task's timeout; the retried task runs the steps
 * again and the ledger answers the ones that committed. A cancel is seen when the workflow task
 * that runs the steps ends, and is refused if the pivot had started by then (docs/versioning.md).
 */
export async function orderSagaV2(order: OrderInput): Promise<OrderSagaResult> {
  return runOrderSaga(order, true);
}

/**
 * The body of both workflow types. `oneTask` is what tells them apart, and each type keeps its own
 * for as long as any of its runs can be in flight: a recorded history replays only on the code that
 * made it.
 * @param oneTask Every step, the provider and carrier calls too, a local activity: one workflow task
 *   per saga (orderSagaV2). It also means every rule applies without a patch marker; without it
 *   (orderSaga) a rule applies to the run if its patch ID is patched().
 */
async function runOrderSaga(order: OrderInput, oneTask: boolean): Promise<OrderSagaResult> {
  /** Whether the rule a patch ID marks applies to this run. */
  const has = (patchId: string) => oneTask || patched(patchId);
  const keys = sagaKeys(workflowInfo().workflowId);
  // Every undo carries the saga's cause: the ledger records it on the tombstone, so a workflow task
  // retried after it was lost unwinds for the same cause (it is recorded, never fingerprinted).
  // The saga hands each undo its key (keys.undo(step)), as it hands each run its step's key.
  const undoInput = (cause: CompensationContext) => ({
    key: cause.key,
    orderId: order.orderId,
    cause: {
      cancelled: cause.cancelled,
      failure: cause.failure,
      ...(cause.operatorRetry !== undefined ? { operatorRetry: cause.operatorRetry } : {}),
    },
  });
  const { orderId } = order;

  // Sagas started since this patch run their database-only steps (and their undos) as local
  // activities in the workflow's worker; older ones keep calling the orders and inventory queues.
  const inWorkflowWorker = has(LOCAL_DATABASE_STEPS_PATCH);
  const db = (role: 'orders' | 'inventory', remote: ActivityOptions, inWorker: LocalActivityOptions) =>
    inWorkflowWorker ? proxyLocalActivities<SagaActivities>(inWorker) : system(role, remote);
  const local = { orders: db('orders', localStep, localDatabaseStep), inventory: db('inventory', localStep, localDatabaseStep) };
  // A cancel that lands while a charge is in flight waits for that activity to end (or to
  // acknowledge the cancel at its next heartbeat) before the saga compensates and closes: no
  // activity is left pending on a closed run, and its late completion is not thrown away.
  // Sagas started before this replay with the SDK's default, which does not wait.
  const cancellationType = has(WAIT_FOR_CANCELLED_ACTIVITIES_PATCH)
    ? ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
    : ActivityCancellationType.TRY_CANCEL;
  // One-task sagas call the provider and the carrier through one local stub, as they undo them.
  const externalInWorker = oneTask ? proxyLocalActivities<SagaActivities>(localExternalStep) : undefined;
  const external = {
    payments: externalInWorker ?? system('payments', { ...externalStep, cancellationType }),
    shipping: externalInWorker ?? system('shipping', { ...externalStep, cancellationType }),
  };
  const externalUndo = oneTask ? proxyLocalActivities<SagaActivities>(localExternalUndo) : undefined;
  const undo = {
    orders: db('orders', compensationRound, localDatabaseUndo),
    inventory: db('inventory', compensationRound, localDatabaseUndo),
    payments: externalUndo ?? system('payments', compensationRound),
    shipping: externalUndo ?? system('shipping', compensationRound),
  };

  const { sagaMetrics } = proxySinks<SagaMetricsSinks>();
  sagaMetrics.started();
  // Sagas started with an OrderId search attribute publish their phase and step as they go;
  // ones started before that was added (none carry it) take no new commands on replay.
  const publish = workflowInfo().typedSearchAttributes.get(OrderIdKey) !== undefined && has(SEARCH_ATTRIBUTES_PATCH);
  // Each upsert is a command and an event, on the path of every step. Sagas started since the
  // phase-only change publish SagaStatus when the phase changes (it starts 'running'), and
  // CurrentStep only with it; the status query answers the current step live.
  let publishedPhase = 'running';
  const saga = new Saga({
    currentRules: oneTask,
    retryInitialIntervalMs: 1000,
    retryMaxIntervalMs: 30_000,
    onTransition: publish
      ? (s) => {
          if (has(PHASE_ONLY_SEARCH_ATTRIBUTES_PATCH)) {
            if (s.phase === publishedPhase) return;
            publishedPhase = s.phase;
          }
          upsertSearchAttributes([
            { key: SagaStatusKey, value: s.phase },
            { key: CurrentStepKey, value: s.currentStep ?? 'none' },
          ]);
        }
      : undefined,
    onCompensationFailure: (step) => sagaMetrics.compensationFailed(step),
    // A compensation that failed for good is written on the order before the next one runs, so
    // the order closes (the record step's undo runs last) as failed, not as compensated, and the
    // outbox tells the books' readers which step was left done. Sagas started before this wrote
    // nothing; their orders closed as compensated or cancelled.
    onCompensationFailed: async (step, failure) => {
      if (!has(RECORD_COMPENSATION_FAILURES_PATCH)) return;
      await local.orders.recordCompensationFailure({ key: keys.undo(step), orderId, failure });
    },
    // A compensation that failed for good holds the saga for an operator (sagaflow sagas
    // retry-compensation / resolve), for up to OPERATOR_HOLD_MS; each settled step is written on
    // the order. Sagas whose compensation failed before the hold replay failing at once.
    holdForOperator: { maxMs: OPERATOR_HOLD_MS },
    onCompensationRetried: async (step, request) => {
      await local.orders.recordCompensationResolved({ key: keys.undo(step), orderId, how: 'retried', ...request });
    },
    onResolved: async (steps, request) => {
      for (const step of steps) await local.orders.recordCompensationResolved({ key: keys.undo(step), orderId, how: 'manual', ...request });
    },
    // Every step is local: a retried task that meets a timeout, a database restart or a rate limit
    // at a step whose answer a lost task had got runs it again until it reads that answer, rather
    // than compensating where the lost task went on (it may have charged and made the label).
    stepAnswered: oneTask ? (step) => local.orders.stepAnswered({ step }) : undefined,
  });
  saga.bindHandlers(statusQuery, cancelUpdate);

  const outcome = await saga.execute(async () => {
    await saga.step({
      name: Step.recordOrder,
      kind: 'compensatable',
      local: inWorkflowWorker,
      run: ({ key }) => local.orders.recordOrder({ key, order }),
      // The order's status and reason come from the cause: the undo's input names only the order.
      undo: (ctx) => undo.orders.cancelOrder(undoInput(ctx)),
    });
    await saga.step({
      name: Step.reserveInventory,
      kind: 'compensatable',
      local: inWorkflowWorker,
      run: ({ key }) => local.inventory.reserveInventory({ key, orderId, items: order.items }),
      undo: (ctx) => undo.inventory.releaseInventory(undoInput(ctx)),
    });
    // Added after sagas were already running: those replay on the old path, without it.
    // Life cycle (docs/versioning.md): patched -> deprecatePatch -> plain code.
    if (has(FRAUD_CHECK_PATCH)) {
      await saga.step({
        name: Step.fraudCheck,
        kind: 'compensatable',
        local: inWorkflowWorker,
        run: ({ key }) => local.orders.checkFraud({ key, orderId, amount: order.amount, paymentToken: order.paymentToken }),
        undo: (ctx) => undo.orders.voidFraudCheck(undoInput(ctx)),
      });
    }
    const charge = await saga.step({
      name: Step.chargePayment,
      kind: 'compensatable',
      local: oneTask,
      // A cancel met here stops the saga before the charge, unless a lost task had started it.
      abandon: oneTask ? ({ key, cancelled, failure }) => external.payments.abandonCharge({ key, orderId, cause: { cancelled, failure } }) : undefined,
      run: ({ key }) =>
        external.payments.chargePayment({
          key,
          orderId,
          amount: order.amount,
          paymentToken: order.paymentToken,
        }),
      undo: (ctx) => undo.payments.refundPayment(undoInput(ctx)),
    });
    // Creating the label is the point of no return. Its undo only voids a label
    // whose creation failed or timed out, so a late one can never ship.
    const shipment = await saga.step({
      name: Step.createShipment,
      kind: 'pivot',
      local: oneTask,
      // A cancel met here, with every step before local: a lost task may have started the pivot.
      abandon: oneTask ? ({ key, cancelled, failure }) => external.shipping.abandonShipment({ key, orderId, cause: { cancelled, failure } }) : undefined,
      run: ({ key }) =>
        external.shipping.createShipment({
          key,
          orderId,
          address: order.shippingAddress,
          items: order.items,
        }),
      undo: (ctx) => undo.shipping.voidShipment(undoInput(ctx)),
    });
    await saga.step({
      name: Step.completeOrder,
      kind: 'retriable',
      run: ({ key }) => local.orders.completeOrder({ key, orderId }),
    });
    return { chargeId: charge.chargeId, trackingNumber: shipment.trackingNumber };
  }).catch((err: unknown) => {
    sagaMetrics.ended('failed', describeFailure(err));
    throw err;
  });

  sagaMetrics.ended(outcome.status, outcome.status === 'completed' ? undefined : outcome.failure);
  if (outcome.status === 'completed') {
    return {
      orderId,
      status: 'completed',
      chargeId: outcome.result.chargeId,
      trackingNumber: outcome.result.trackingNumber,
      completedSteps: outcome.completedSteps,
      compensations: outcome.compensations,
    };
  }
  return {
    orderId,
    status: outcome.status,
    failure: outcome.failure,
    completedSteps: outcome.completedSteps,
    compensations: outcome.compensations,
  };
}

// The bodies keep the contract's signature: callers type their handles by OrderSagaWorkflow.
const _keepsContract: OrderSagaWorkflow[] = [orderSaga, orderSagaV2];
