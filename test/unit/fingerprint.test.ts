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

test('the canonical text: keys sorted at every depth, arrays kept as arrays in their order, null and primitives as JSON writes them', () => {
  const value = { b: [3, { z: null, a: 'x' }, [2, 1]], a: { d: true, c: -0.5 }, e: undefined, n: null };
  expect(canonicalJson(value)).toBe('{"a":{"c":-0.5,"d":true},"b":[3,{"a":"x","z":null},[2,1]],"n":null}');
  expect(canonicalJson([{ b: 1, a: 2 }])).toBe('[{"a":2,"b":1}]');
  expect(canonicalJson(null)).toBe('null');
  expect(canonicalJson('text')).toBe('"text"');
  expect(canonicalJson(12)).toBe('12');
});

test('null, an empty object, an empty array and an array as an object are all told apart', () => {
  const prints = [null, {}, [], { 0: 'a' }, ['a'], '', 0, false].map(fingerprint);
  expect(new Set(prints).size).toBe(prints.length);
  expect(fingerprint({ a: { b: undefined } })).toBe(fingerprint({ a: {} }));
});
