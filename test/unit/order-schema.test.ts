import { InvalidOrderError, parseOrderInput } from '../../src/orders/schema';

const valid = {
  orderId: 'o-1',
  customerId: 'c-1',
  items: [{ sku: 'sku-1', quantity: 2 }],
  amount: { amountMinor: 1000, currency: 'EUR' },
  paymentToken: 'tok_visa',
  shippingAddress: { name: 'A', line1: 'B', city: 'C', postalCode: 'D', country: 'DE' },
};

test('a valid order parses', () => {
  expect(parseOrderInput(valid)).toEqual(valid);
});

test.each<[string, (o: any) => void, string]>([
  ['float money', (o) => (o.amount.amountMinor = 10.5), 'amount.amountMinor'],
  ['negative money', (o) => (o.amount.amountMinor = -1), 'amount.amountMinor'],
  ['unknown currency', (o) => (o.amount.currency = 'XXX'), 'amount.currency'],
  ['zero quantity', (o) => (o.items[0].quantity = 0), 'items.0.quantity'],
  ['no items', (o) => (o.items = []), 'items'],
  ['duplicate SKU', (o) => o.items.push({ sku: 'sku-1', quantity: 1 }), 'items'],
  ['order id with SQL in it', (o) => (o.orderId = "1'; DROP TABLE orders;--"), 'orderId'],
  ['unknown field', (o) => (o.extra = true), '(root)'],
  ['lower-case country', (o) => (o.shippingAddress.country = 'de'), 'shippingAddress.country'],
])('%s is refused naming the field', (_name, mutate, path) => {
  const o = structuredClone(valid) as any;
  mutate(o);
  let err: unknown;
  try {
    parseOrderInput(o);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(InvalidOrderError);
  expect((err as InvalidOrderError).issues.map((i) => i.path)).toContain(path);
});
