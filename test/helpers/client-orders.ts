import { randomBytes } from 'node:crypto';
import { inTransaction, type Db } from '../../src/db/pool';
import { insertOrder } from '../../src/orders/repository';
import { orderWorkflowId } from '../../workflows/order/ids';

/** An order row of an API client's, as the API writes it (no saga started): its events, and its webhooks, follow. */
export async function placeClientOrder(db: Db, clientId: string, customerId: string, amountMinor = 700): Promise<string> {
  const orderId = `ord_${randomBytes(6).toString('hex')}`;
  await inTransaction(db, (tx) =>
    insertOrder(
      tx,
      {
        orderId,
        customerId,
        items: [{ sku: 'widget', quantity: 1 }],
        amount: { amountMinor, currency: 'EUR' },
        paymentToken: 'tok_visa',
        shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
      },
      { clientId, workflowId: orderWorkflowId(orderId) },
    ),
  );
  return orderId;
}
