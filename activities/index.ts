import type { ActivityDeps } from './deps';
import { createFraudActivities } from './fraud';
import { createInventoryActivities } from './inventory';
import { createOrderActivities } from './orders';
import { createPaymentActivities } from './payments';
import { createShippingActivities } from './shipping';

export type { ActivityDeps } from './deps';

/** The saga's activities by the system (and task queue) they belong to. */
export function activitiesBySystem(deps: ActivityDeps) {
  return {
    orders: { ...createOrderActivities(deps), ...createFraudActivities(deps) },
    inventory: createInventoryActivities(deps),
    payments: createPaymentActivities(deps),
    shipping: createShippingActivities(deps),
  };
}

/** All saga activities, bound to their dependencies; no module-level state. */
export function createActivities(deps: ActivityDeps) {
  const s = activitiesBySystem(deps);
  return { ...s.orders, ...s.inventory, ...s.payments, ...s.shipping };
}

export type SagaActivities = ReturnType<typeof createActivities>;
