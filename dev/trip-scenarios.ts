import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Db } from '../src/db/pool';
import { addFault } from './services/clients';
import {
  cancelTripUpdate,
  confirmTripSignal,
  tripSaga,
  tripStatusQuery,
  TripStep,
  tripWorkflowId,
  type TripInput,
} from '../examples/trip-booking';

export interface TripScenarioContext {
  client: Client;
  db: Db;
  taskQueue: string;
  paymentProviderUrl: string;
}

type Handle = WorkflowHandle<typeof tripSaga>;

/** Every path a trip can take, each run to its end: the histories the replay gate keeps. */
export async function runTripScenarios(ctx: TripScenarioContext, label: string): Promise<Map<string, string>> {
  const scenarioOf = new Map<string, string>();
  let n = 0;
  const trip = async (scenario: string, over: Partial<TripInput> = {}, hotelCapacity = 5): Promise<Handle> => {
    n += 1;
    const t: TripInput = {
      tripId: `${label}-${scenario}-${n}`,
      traveller: 'ada',
      flight: `LH-${label}-${n}`,
      hotel: `hotel-${label}-${n}`,
      car: `car-${label}-${n}`,
      deposit: { amountMinor: 20_000, currency: 'EUR' },
      paymentToken: 'tok_visa',
      confirmWithinMs: 60_000,
      ...over,
    };
    await ctx.db.query(
      `INSERT INTO trip_inventory (kind, item, capacity) VALUES ('flight', $1, 5), ('hotel', $2, $4), ('car', $3, 5)
       ON CONFLICT DO NOTHING`,
      [t.flight, t.hotel, t.car, hotelCapacity],
    );
    const handle = await ctx.client.workflow.start(tripSaga, {
      workflowId: tripWorkflowId(t.tripId),
      taskQueue: ctx.taskQueue,
      args: [t],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    scenarioOf.set(handle.workflowId, scenario);
    return handle;
  };
  const waiting = async (h: Handle) => {
    for (let i = 0; i < 400; i++) {
      if ((await h.query(tripStatusQuery)).completedSteps.includes(TripStep.chargeDeposit)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${h.workflowId} never got to its confirmation`);
  };
  const settle = (h: Handle) => h.result().catch(() => undefined);

  const confirmed = await trip('confirmed');
  await waiting(confirmed);
  await confirmed.signal(confirmTripSignal);
  await settle(confirmed);

  await settle(await trip('hotel-sold-out', {}, 0));
  await settle(await trip('deposit-declined', { paymentToken: 'tok_decline' }));
  await settle(await trip('confirmation-timeout', { confirmWithinMs: 1000 }));

  await addFault(ctx.paymentProviderUrl, { kind: 'error', path: '/refunds', times: 3 });
  await settle(await trip('refund-retried', { confirmWithinMs: 500 }));

  const cancelled = await trip('cancelled-while-waiting');
  await waiting(cancelled);
  await cancelled.executeUpdate(cancelTripUpdate, { args: [{ reason: 'plans changed' }] });
  await settle(cancelled);
  return scenarioOf;
}
