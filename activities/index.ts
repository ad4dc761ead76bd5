import { createLedger, type Ledger } from '@sagaflow/toolkit/ledger';
import type { ActivityDeps } from './deps';
import { createAbandonActivities, createStepAnsweredActivities } from './abandon';
import { createFraudActivities } from './fraud';
import { createInventoryActivities } from './inventory';
import { createOrderActivities } from './orders';
import { createPaymentActivities } from './payments';
import { createShippingActivities } from './shipping';

export type { ActivityDeps } from './deps';

/**
 * The saga's activities by the system (and task queue) they belong to, recording through
 * `ledger`: the real one on deps.db unless a benchmark compares without it.
 */
export function activitiesBySystem(deps: ActivityDeps, ledger: Ledger = createLedger(deps.db, deps.ledgerHooks)) {
  const { abandonCharge, abandonShipment } = createAbandonActivities(ledger);
  return {
    orders: { ...createOrderActivities(deps, ledger), ...createFraudActivities(deps, ledger), ...createStepAnsweredActivities(ledger) },
    inventory: createInventoryActivities(deps, ledger),
    payments: { ...createPaymentActivities(deps, ledger), abandonCharge },
    shipping: { ...createShippingActivities(deps, ledger), abandonShipment },
  };
}

/** All saga activities, bound to their dependencies; no module-level state. */
export function createActivities(deps: ActivityDeps) {
  const s = activitiesBySystem(deps);
  return { ...s.orders, ...s.inventory, ...s.payments, ...s.shipping };
}

export type SagaActivities = ReturnType<typeof createActivities>;
