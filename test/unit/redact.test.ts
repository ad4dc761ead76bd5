/**
 * redactAddresses (src/redact.ts): failure text as clients may read it. Addresses go, whatever
 * wrote them; the words around them, and text that only looks like an address, stay.
 */
import { HIDDEN, redactAddresses } from '../../src/redact';

test.each([
  ['ProviderUnavailable: http://127.0.0.1:41375/shipments answered 503', `ProviderUnavailable: ${HIDDEN} answered 503`],
  ['Error: connect ECONNREFUSED 127.0.0.1:5432', `Error: connect ECONNREFUSED ${HIDDEN}`],
  ['connect ECONNREFUSED ::1:5432', `connect ECONNREFUSED ${HIDDEN}`],
  ['connect ECONNREFUSED [2001:db8::1]:443', `connect ECONNREFUSED ${HIDDEN}`],
  ['connect EHOSTUNREACH fe80::1%eth0', `connect EHOSTUNREACH ${HIDDEN}`],
  ['getaddrinfo ENOTFOUND postgres', `getaddrinfo ENOTFOUND ${HIDDEN}`],
  ['14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 10.0.3.7:7233', `14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED ${HIDDEN}`],
  ['timeout connecting to temporal-frontend.internal:7233', `timeout connecting to ${HIDDEN}`],
  ['could not reach postgres://app:secret@db.internal/sagaflow', `could not reach ${HIDDEN}`],
])('%s', (text, expected) => {
  expect(redactAddresses(text)).toBe(expected);
});

test.each([
  'ProviderUnavailable: carrier answered 503 to create-shipment',
  'PaymentDeclined: card declined',
  'OutOfStock: sku widget-1: wanted 2, 1 available',
  'key order-ord_0123abcd/charge-payment/undo reused with another request',
  'the saga is already compensating for ProviderUnavailable: payment provider unreachable for charge-payment (ECONNREFUSED)',
  'failed at 12:30:45 on 2026-01-02T03:04:05Z',
  'cancelled by the customer',
])('left as it is: %s', (text) => {
  expect(redactAddresses(text)).toBe(text);
});
