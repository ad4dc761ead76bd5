import { boundLedger } from '../src/ledger/ledger';
import { failOnIdempotencyAnswer, postIdempotent } from '../src/services/clients';
import { withHeartbeat } from './heartbeat';
import { Step } from '../workflows/steps';
import type { Address, OrderItem, StepInput, UndoInput } from '../workflows/types';
import type { ActivityDeps } from './deps';

export function createShippingActivities(deps: ActivityDeps) {
  const ledger = boundLedger(deps);
  return {
    async createShipment(
      input: StepInput & { address: Address; items: OrderItem[] },
    ): Promise<{ shipmentId: string; trackingNumber: string }> {
      return ledger.runExternalStep<{ shipmentId: string; trackingNumber: string }>(
        { key: input.key, step: Step.createShipment, input },
        {
          async prepare(tx) {
            await tx.query(
              `INSERT INTO shipments (idempotency_key, order_id, status) VALUES ($1, $2, 'pending')
               ON CONFLICT (idempotency_key) DO NOTHING`,
              [input.key, input.orderId],
            );
          },
          async call() {
            const answer = await withHeartbeat((signal) =>
              postIdempotent<{ id: string; tracking_number: string }>(
                `${deps.carrierUrl}/shipments`,
                input.key,
                { order_id: input.orderId, address: input.address, items: input.items },
                deps.providerTimeoutMs,
                signal,
              ),
            );
            failOnIdempotencyAnswer(answer, input.key);
            return { ok: true, result: { shipmentId: answer.body.id, trackingNumber: answer.body.tracking_number } };
          },
          async confirm(tx, outcome) {
            if (!outcome.ok) return;
            await tx.query(
              `UPDATE shipments SET status = 'created', carrier_shipment_id = $2, tracking_number = $3,
                      updated_at = now()
                WHERE idempotency_key = $1 AND status = 'pending'`,
              [input.key, outcome.result.shipmentId, outcome.result.trackingNumber],
            );
          },
        },
      );
    },

    async voidShipment(input: UndoInput): Promise<{ status: string }> {
      return ledger.runExternalUndo<{ status: string }>({ ...input, step: Step.createShipment, input }, {
        async call() {
          const answer = await withHeartbeat((signal) =>
            postIdempotent<{ status: string }>(
              `${deps.carrierUrl}/shipments/void`,
              input.key,
              { shipment_key: input.forwardKey },
              deps.providerTimeoutMs,
              signal,
            ),
          );
          failOnIdempotencyAnswer(answer, input.key);
          return { status: answer.body.status };
        },
        async confirm(tx) {
          await tx.query(
            `UPDATE shipments SET status = 'voided', updated_at = now()
              WHERE idempotency_key = $1 AND status IN ('pending', 'created')`,
            [input.forwardKey],
          );
        },
      });
    },
  };
}
