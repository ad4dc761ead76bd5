import type { CallOutcome } from '@sagaflow/toolkit/ledger';
import { FailureType } from '../workflows/order/failures';
import type { Address, Money, OrderItem } from '../workflows/order/types';
import { callService } from './provider-http';

export interface ProviderDeps {
  paymentProviderUrl: string;
  carrierUrl: string;
  providerTimeoutMs: number;
}

/** The payment provider, called with each step's key as its Idempotency-Key. */
export function paymentProviderClient(deps: ProviderDeps) {
  const opts = { timeoutMs: deps.providerTimeoutMs, service: 'payment provider' };
  return {
    /** A declined card (402) is a business outcome, recorded and replayed like a success. */
    async charge(key: string, req: { amount: Money; source: string }): Promise<CallOutcome<{ chargeId: string }>> {
      const answer = await callService<{ id?: string }>(
        `${deps.paymentProviderUrl}/charges`,
        key,
        { amount_minor: req.amount.amountMinor, currency: req.amount.currency, source: req.source },
        { ...opts, pass: [402] },
      );
      if (answer.status === 402) {
        return { ok: false, failure: { type: FailureType.PaymentDeclined, message: 'card declined', details: [answer.body] } };
      }
      return { ok: true, result: { chargeId: String(answer.body.id) } };
    },

    /** Refunds the charge `chargeId` under the refund's own key: a retry replays, never refunds twice. */
    async refund(key: string, chargeId: string): Promise<{ status: 'refunded' }> {
      const answer = await callService<{ status: string }>(`${deps.paymentProviderUrl}/refunds`, key, { charge: chargeId }, opts);
      if (answer.body.status !== 'refunded') throw new Error(`the provider answered refund ${key} with status ${answer.body.status}`);
      return { status: 'refunded' };
    },
  };
}

/** The carrier, called with each step's key as its Idempotency-Key. */
export function carrierClient(deps: ProviderDeps) {
  const opts = { timeoutMs: deps.providerTimeoutMs, service: 'carrier' };
  return {
    async createLabel(
      key: string,
      req: { orderId: string; address: Address; items: OrderItem[] },
    ): Promise<{ shipmentId: string; trackingNumber: string }> {
      const answer = await callService<{ id: string; tracking_number: string }>(
        `${deps.carrierUrl}/shipments`,
        key,
        { order_id: req.orderId, address: req.address, items: req.items },
        opts,
      );
      return { shipmentId: answer.body.id, trackingNumber: answer.body.tracking_number };
    },

    /** Voids the label `shipmentId` under the void's own key: a retry replays, never voids twice. */
    async voidLabel(key: string, shipmentId: string): Promise<{ status: 'voided' }> {
      const answer = await callService<{ status: string }>(`${deps.carrierUrl}/shipments/void`, key, { shipment: shipmentId }, opts);
      if (answer.body.status !== 'voided') throw new Error(`the carrier answered void ${key} with status ${answer.body.status}`);
      return { status: 'voided' };
    },
  };
}
