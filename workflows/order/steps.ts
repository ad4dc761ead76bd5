/** Step names: the second half of every idempotency key. Renaming one breaks in-flight sagas. */
export const Step = {
  recordOrder: 'record-order',
  reserveInventory: 'reserve-inventory',
  fraudCheck: 'fraud-check',
  chargePayment: 'charge-payment',
  createShipment: 'create-shipment',
  completeOrder: 'complete-order',
} as const;

export type StepName = (typeof Step)[keyof typeof Step];
