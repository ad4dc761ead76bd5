import type { ActivityDeps } from './deps';
import { createFraudActivities } from './fraud';
import { createInventoryActivities } from './inventory';
import { createOrderActivities } from './orders';
import { createPaymentActivities } from './payments';
import { createShippingActivities } from './shipping';

export type { ActivityDeps } from './deps';

/** All saga activities, bound to their dependencies; no module-level state. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createOrderActivities(deps),
    ...createInventoryActivities(deps),
    ...createFraudActivities(deps),
    ...createPaymentActivities(deps),
    ...createShippingActivities(deps),
  };
}

export type SagaActivities = ReturnType<typeof createActivities>;
