import { canonicalJson, fingerprint } from '../../src/ledger/fingerprint';

test('key order never changes a fingerprint, at any depth', () => {
  const a = { b: 1, a: { y: [1, { q: 1, p: 2 }], x: 'z' } };
  const b = { a: { x: 'z', y: [1, { p: 2, q: 1 }] }, b: 1 };
  expect(canonicalJson(a)).toBe(canonicalJson(b));
  expect(fingerprint(a)).toBe(fingerprint(b));
});

test('any change of value, or of array order, changes the fingerprint', () => {
  const base = { amount: 100, items: [1, 2] };
  expect(fingerprint({ amount: 101, items: [1, 2] })).not.toBe(fingerprint(base));
  expect(fingerprint({ amount: 100, items: [2, 1] })).not.toBe(fingerprint(base));
  expect(fingerprint({ amount: '100', items: [1, 2] })).not.toBe(fingerprint(base));
});

test('undefined members are dropped like JSON does', () => {
  expect(fingerprint({ a: 1, b: undefined })).toBe(fingerprint({ a: 1 }));
});
