/**
 * The trip saga (examples/trip-booking), built only on sagaflow's public API,
 * on the real Temporal dev server, real PostgreSQL and the real payment
 * provider over HTTP: every path, with the books reconciled from rows.
 */
import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import {
  cancelTripUpdate,
  confirmTripSignal,
  createTripWorker,
  migrateTrips,
  tripSaga,
  tripStatusQuery,
  TripFailure,
  TripStep,
  tripWorkflowId,
  type TripInput,
} from '../../examples/trip-booking';
import { bundleFromSource } from '../../workers/toolkit-source';
import { addFault, createTestContext, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
let worker: Worker;
const taskQueue = uniqueId('trips');

beforeAll(async () => {
  ctx = await createTestContext('trips');
  await migrateTrips(ctx.db);
  worker = await createTripWorker({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue,
    deps: { db: ctx.db, paymentProviderUrl: ctx.payment.url, providerTimeoutMs: 3000 },
    workerOptions: { bundlerOptions: { webpackConfigHook: bundleFromSource }, dataConverter: ctx.dataConverter },
  });
  ctx.startWorker(worker);
});

afterEach(async () => {
  await fetch(`${ctx.payment.url}/__faults`, { method: 'DELETE' });
});

afterAll(async () => {
  await ctx?.close();
});

/** A trip whose three items each have `capacity` units (hotel: `hotelCapacity`). */
async function newTrip(over: Partial<TripInput> = {}, hotelCapacity = 5): Promise<TripInput> {
  const trip: TripInput = {
    tripId: uniqueId('trip'),
    traveller: 'ada',
    flight: uniqueId('LH'),
    hotel: uniqueId('hotel'),
    car: uniqueId('car'),
    deposit: { amountMinor: 20_000, currency: 'EUR' },
    paymentToken: 'tok_visa',
    confirmWithinMs: 60_000,
    ...over,
  };
  await ctx.db.query(
    `INSERT INTO trip_inventory (kind, item, capacity) VALUES ('flight', $1, 5), ('hotel', $2, $4), ('car', $3, 5)`,
    [trip.flight, trip.hotel, trip.car, hotelCapacity],
  );
  return trip;
}

const start = (trip: TripInput): Promise<WorkflowHandle<typeof tripSaga>> =>
  ctx.client.workflow.start(tripSaga, {
    workflowId: tripWorkflowId(trip.tripId),
    taskQueue,
    args: [trip],
    workflowIdConflictPolicy: 'USE_EXISTING',
  });

async function waitingForConfirmation(handle: WorkflowHandle<typeof tripSaga>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = await handle.query(tripStatusQuery);
    if (s.completedSteps.includes(TripStep.chargeDeposit)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the trip never got to its confirmation');
}

/** The trip's books, read from every table it touches and from the provider's. */
async function books(trip: TripInput) {
  const { rows } = await ctx.db.query(
    `SELECT t.status, t.itinerary, t.failure_reason,
       (SELECT json_object_agg(kind, status) FROM trip_holds WHERE trip_id = t.id) AS holds,
       (SELECT json_agg(json_build_object('kind', kind, 'held', held, 'booked', booked) ORDER BY kind)
          FROM trip_inventory WHERE item IN ($2, $3, $4)) AS inventory,
       (SELECT status FROM trip_deposits WHERE trip_id = t.id) AS deposit,
       (SELECT coalesce(sum(amount_minor), 0)::int FROM provider_charges
         WHERE idempotency_key = $5 AND status = 'succeeded') AS money_held
     FROM trips t WHERE t.id = $1`,
    [trip.tripId, trip.flight, trip.hotel, trip.car, `${tripWorkflowId(trip.tripId)}/${TripStep.chargeDeposit}`],
  );
  return rows[0] as {
    status: string;
    itinerary: Record<string, string> | null;
    failure_reason: string | null;
    holds: Record<string, string> | null;
    inventory: { kind: string; held: number; booked: number }[];
    deposit: string | null;
    money_held: number;
  };
}

const nothingHeld = [
  { kind: 'car', held: 0, booked: 0 },
  { kind: 'flight', held: 0, booked: 0 },
  { kind: 'hotel', held: 0, booked: 0 },
];

test('confirmed in time: the holds become bookings, the deposit stays taken, the itinerary is issued', async () => {
  const trip = await newTrip();
  const handle = await start(trip);
  await waitingForConfirmation(handle);
  // The three holds ran at once, before the deposit.
  expect((await handle.query(tripStatusQuery)).completedSteps.slice(1, 4).sort()).toEqual(
    [TripStep.holdCar, TripStep.holdFlight, TripStep.holdHotel].sort(),
  );
  await handle.signal(confirmTripSignal);
  const result = await handle.result();

  expect(result.status).toBe('confirmed');
  expect(result.compensations).toEqual([]);
  const b = await books(trip);
  expect(b).toMatchObject({
    status: 'confirmed',
    itinerary: { flight: trip.flight, hotel: trip.hotel, car: trip.car },
    holds: { flight: 'booked', hotel: 'booked', car: 'booked' },
    deposit: 'captured',
    money_held: 20_000,
  });
  expect(b.inventory).toEqual(nothingHeld.map((i) => ({ ...i, booked: 1 })));
});

test('the hotel is sold out: the flight and car holds, made at the same time, are released; no deposit is taken', async () => {
  const trip = await newTrip({}, 0);
  const result = await (await start(trip)).result();

  expect(result.status).toBe('compensated');
  expect(result.failure?.type).toBe(TripFailure.SoldOut);
  const b = await books(trip);
  expect(b).toMatchObject({ status: 'failed', holds: { flight: 'released', car: 'released' }, deposit: null, money_held: 0 });
  expect(b.inventory).toEqual(nothingHeld);
  // The deposit step never ran; its undo did not have to.
  expect(result.compensations.map((c) => c.step).sort()).toEqual(
    [TripStep.recordTrip, TripStep.holdFlight, TripStep.holdHotel, TripStep.holdCar].sort(),
  );
});

test('the deposit is declined: every hold is released, and no money is held', async () => {
  const trip = await newTrip({ paymentToken: 'tok_decline' });
  const result = await (await start(trip)).result();

  expect(result.failure?.type).toBe(TripFailure.DepositDeclined);
  const b = await books(trip);
  expect(b).toMatchObject({ status: 'failed', holds: { flight: 'released', hotel: 'released', car: 'released' }, deposit: 'declined', money_held: 0 });
  expect(b.inventory).toEqual(nothingHeld);
});

test('not confirmed in time: everything is released and the deposit refunded, all at once', async () => {
  const trip = await newTrip({ confirmWithinMs: 1500 });
  const handle = await start(trip);
  const result = await handle.result();

  expect(result.status).toBe('compensated');
  expect(result.failure?.type).toBe(TripFailure.ConfirmationTimeout);
  const b = await books(trip);
  expect(b).toMatchObject({ status: 'failed', holds: { flight: 'released', hotel: 'released', car: 'released' }, deposit: 'refunded', money_held: 0 });
  expect(b.failure_reason).toContain('ConfirmationTimeout');
  expect(b.inventory).toEqual(nothingHeld);
});

test('a refund that fails at first is retried until the money is back', async () => {
  const trip = await newTrip({ confirmWithinMs: 500 });
  await addFault(ctx.payment.url, { kind: 'error', path: '/refunds', times: 4 });
  const result = await (await start(trip)).result();

  const refund = result.compensations.find((c) => c.step === TripStep.chargeDeposit);
  expect(refund).toMatchObject({ status: 'done' });
  expect(refund!.attempts).toBeGreaterThanOrEqual(2);
  expect(await books(trip)).toMatchObject({ deposit: 'refunded', money_held: 0 });
});

test('cancelled while waiting for the confirmation: cancelled, released, refunded', async () => {
  const trip = await newTrip();
  const handle = await start(trip);
  await waitingForConfirmation(handle);
  expect(await handle.executeUpdate(cancelTripUpdate, { args: [{ reason: 'plans changed' }] })).toEqual({ accepted: true });
  const result = await handle.result();

  expect(result.status).toBe('cancelled');
  const b = await books(trip);
  expect(b).toMatchObject({ status: 'cancelled', holds: { flight: 'released', hotel: 'released', car: 'released' }, deposit: 'refunded', money_held: 0 });
  expect(b.inventory).toEqual(nothingHeld);
});

test('a cancel sent with the confirmation is either taken first or refused: the books agree either way', async () => {
  const trip = await newTrip();
  const handle = await start(trip);
  await waitingForConfirmation(handle);
  await handle.signal(confirmTripSignal);
  const cancel = await handle.executeUpdate(cancelTripUpdate, { args: [{}] }).then(
    () => 'accepted',
    (err: unknown) => (err instanceof WorkflowUpdateFailedError ? 'refused' : 'closed'),
  );
  const result = await handle.result();
  const b = await books(trip);
  if (cancel === 'accepted') {
    expect(result.status).toBe('cancelled');
    expect(b).toMatchObject({ status: 'cancelled', money_held: 0 });
  } else {
    // Refused once the booking (the pivot) had started, or the trip had already closed.
    expect(result.status).toBe('confirmed');
    expect(b).toMatchObject({ status: 'confirmed', money_held: 20_000 });
  }
});

test('starting the same trip twice runs one saga: one hold of each, one deposit', async () => {
  const trip = await newTrip();
  const [a, b] = await Promise.all([start(trip), start(trip)]);
  expect((await a.describe()).runId).toBe((await b.describe()).runId);
  await waitingForConfirmation(a);
  await a.signal(confirmTripSignal);
  await a.result();
  const charges = await ctx.db.query(`SELECT count(*)::int AS n FROM provider_charges WHERE idempotency_key LIKE $1`, [
    `${tripWorkflowId(trip.tripId)}/%`,
  ]);
  expect(charges.rows[0].n).toBe(1);
  expect((await books(trip)).inventory).toEqual(nothingHeld.map((i) => ({ ...i, booked: 1 })));
});
