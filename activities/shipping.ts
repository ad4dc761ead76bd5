import { Step } from '../workflows/order/steps';
import { providerKey, type Address, type OrderItem, type StepInput, type UndoInput } from '../workflows/order/types';
import { forwardEffect } from '@sagaflow/toolkit/ledger';
import type { Ledger } from '@sagaflow/toolkit/ledger';
import type { ActivityDeps } from './deps';
import { carrierClient } from './providers';

type ShipmentInput = StepInput & { address: Address; items: OrderItem[] };
type Label = { shipmentId: string; trackingNumber: string };

export function createShippingActivities(deps: ActivityDeps, books: Ledger) {
  const ledger = books.step(Step.createShipment);
  const carrier = carrierClient(deps);
  return {
    async createShipment(input: ShipmentInput): Promise<Label> {
      return ledger.external(input.key, input, {
        // Statements, not functions of the transaction: each goes with its transaction's COMMIT.
        prepareStatement: {
          text: `INSERT INTO shipments (idempotency_key, order_id, status) VALUES ($1, $2, 'pending')
                 ON CONFLICT (idempotency_key) DO NOTHING`,
          values: [input.key, input.orderId],
        },
        call: async () => ({ ok: true, result: await carrier.createLabel(input.key, input) }),
        confirmStatement: (outcome) =>
          outcome.ok
            ? {
                text: `UPDATE shipments SET status = 'created', carrier_shipment_id = $2, tracking_number = $3, updated_at = now()
                        WHERE idempotency_key = $1 AND status = 'pending'`,
                values: [input.key, outcome.result.shipmentId, outcome.result.trackingNumber],
              }
            : undefined,
      });
    },

    /** Voids the label the shipment step created: nothing if it never created one. */
    async voidShipment(input: UndoInput): Promise<{ status: 'voided' | 'nothing_to_void' }> {
      return ledger.externalUndo<{ status: 'voided' | 'nothing_to_void' }, Label>(input.key, input, {
        async call(ctx) {
          const label = await forwardEffect<Label, ShipmentInput>(ctx, (forward) => carrier.createLabel(ctx.forwardKey, forward));
          return label ? carrier.voidLabel(providerKey(input), label.shipmentId) : { status: 'nothing_to_void' };
        },
        confirmStatement: (_result, { forwardKey }) => ({
          text: `UPDATE shipments SET status = 'voided', updated_at = now()
                  WHERE idempotency_key = $1 AND status IN ('pending', 'created')`,
          values: [forwardKey],
        }),
      });
    },
  };
}
