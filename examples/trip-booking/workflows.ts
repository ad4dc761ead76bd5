import { ApplicationFailure, condition, defineSignal, patched, proxyActivities, proxyLocalActivities, setHandler } from '@temporalio/workflow';
import { Saga, sagaCancelUpdate, sagaStatusQuery, type CompensationContext } from '@sagaflow/toolkit/workflow';
import type { TripActivities } from './activities';
import { holdStep, TripFailure, TripStep, type HoldKind, type TripInput, type TripResult } from './types';

/** The standard saga query and update (any client can use @sagaflow/toolkit/workflow's own). */
export const tripStatusQuery = sagaStatusQuery;
export const cancelTripUpdate = sagaCancelUpdate;
/** The traveller confirms the held trip; without it in time, everything is released. */
export const confirmTripSignal = defineSignal('confirm');

/** Marks trips whose database steps (record-trip, the holds) and their undos run as local activities. */
export const TRIP_LOCAL_STEPS_PATCH = 'trip-database-steps-as-local-activities';

const retry = { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s' } as const;
const local = proxyActivities<TripActivities>({ startToCloseTimeout: '10s', retry: { ...retry, maximumAttempts: 10 } });
const external = proxyActivities<TripActivities>({ startToCloseTimeout: '15s', retry: { ...retry, maximumAttempts: 6 } });
// One round of a compensation; the saga keeps starting rounds until it succeeds.
const undo = proxyActivities<TripActivities>({ startToCloseTimeout: '15s', retry: { ...retry, maximumAttempts: 3 } });
// The same database steps in the workflow's own worker: no task queue round trip per step.
const inWorker = proxyLocalActivities<TripActivities>({ startToCloseTimeout: '10s', retry: { ...retry, maximumAttempts: 10 } });
const undoInWorker = proxyLocalActivities<TripActivities>({ startToCloseTimeout: '15s', retry: { ...retry, maximumAttempts: 3 } });

/** Why the saga compensates, for the ledger to record on the tombstone (never fingerprinted). */
const causeOf = (ctx: CompensationContext) => ({ cancelled: ctx.cancelled, failure: ctx.failure });

/**
 * A trip booking: record the trip, hold a flight, a hotel and a car at once,
 * take a deposit, then wait for the traveller to confirm within the deadline.
 * Confirmed: the holds become bookings (the point of no return) and an
 * itinerary is issued. Not confirmed in time, cancelled, or any step failing
 * for good: every hold is released and the deposit refunded, all at once.
 */
export async function tripSaga(trip: TripInput): Promise<TripResult> {
  const { tripId } = trip;
  const saga = new Saga({ parallelCompensation: true, retryInitialIntervalMs: 500, retryMaxIntervalMs: 10_000 });
  saga.bindHandlers();
  let confirmed = false;
  setHandler(confirmTripSignal, () => {
    confirmed = true;
  });

  // Trips started since this patch run their database steps as local activities (`local: true`: they
  // commit while the workflow task is open, so a lost task's retry runs them again and the ledger
  // answers); older trips replay with every step as an activity of its own.
  const localSteps = patched(TRIP_LOCAL_STEPS_PATCH);
  const db = localSteps ? inWorker : local;
  const dbUndo = localSteps ? undoInWorker : undo;
  const hold = (kind: HoldKind) => ({
    name: holdStep[kind],
    kind: 'compensatable' as const,
    local: localSteps,
    // The saga hands each run its step's key, and each undo the undo's key.
    run: ({ key }: { key: string }) => db.holdItem({ key, tripId, kind, item: trip[kind] }),
    undo: (ctx: CompensationContext) =>
      localSteps
        ? dbUndo.releaseItem({ key: ctx.key, tripId, kind, cause: causeOf(ctx) })
        : undo.releaseItem({ key: ctx.key, tripId, kind }),
  });

  const outcome = await saga.execute(async () => {
    await saga.step({
      name: TripStep.recordTrip,
      kind: 'compensatable',
      local: localSteps,
      run: ({ key }) => db.recordTrip({ key, trip }),
      // The trip's status and reason come from the cause; the undo's input names only the trip.
      undo: (ctx) =>
        localSteps
          ? dbUndo.closeTrip({ key: ctx.key, tripId, cause: causeOf(ctx) })
          : undo.closeTrip({
              key: ctx.key,
              tripId,
              status: ctx.cancelled ? 'cancelled' : 'failed',
              reason: `${ctx.failure.type}: ${ctx.failure.message}`,
            }),
    });
    await saga.all([hold('flight'), hold('hotel'), hold('car')]);
    const deposit = await saga.step({
      name: TripStep.chargeDeposit,
      kind: 'compensatable',
      run: ({ key }) => external.chargeDeposit({ key, tripId, amount: trip.deposit, paymentToken: trip.paymentToken }),
      undo: (ctx) => undo.refundDeposit({ key: ctx.key, tripId, ...(localSteps ? { cause: causeOf(ctx) } : {}) }),
    });
    // A cancel while we wait cancels this wait too, and the saga unwinds.
    if (!(await condition(() => confirmed, trip.confirmWithinMs))) {
      throw ApplicationFailure.nonRetryable(`not confirmed within ${trip.confirmWithinMs} ms`, TripFailure.ConfirmationTimeout);
    }
    await saga.step({
      name: TripStep.bookTrip,
      kind: 'pivot',
      run: ({ key }) => local.bookTrip({ key, tripId }),
    });
    await saga.step({
      name: TripStep.issueItinerary,
      kind: 'retriable',
      run: ({ key }) => local.issueItinerary({ key, tripId }),
    });
    return { depositChargeId: deposit.chargeId };
  });

  const { completedSteps, compensations } = outcome;
  if (outcome.status === 'completed') {
    return { tripId, status: 'confirmed', depositChargeId: outcome.result.depositChargeId, completedSteps, compensations };
  }
  return { tripId, status: outcome.status, failure: outcome.failure, completedSteps, compensations };
}
