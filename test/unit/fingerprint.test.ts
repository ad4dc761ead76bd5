import { canonicalJson, fingerprint, UnrepresentableValueError } from '../../packages/toolkit/src/ledger/fingerprint';

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

describe('values JSON cannot carry are refused, by path', () => {
  class Money {
    constructor(readonly amount: number) {}
  }
  const refused: [string, unknown, string][] = [
    ['a Map', { items: [{}, {}, { meta: new Map([['a', 1]]) }] }, 'input.items[2].meta: a Map cannot be carried as JSON'],
    ['a Set', { tags: new Set(['x']) }, 'input.tags: a Set cannot be carried as JSON'],
    ['a BigInt', { amount: 10n }, 'input.amount: a BigInt cannot be carried as JSON'],
    ['undefined in an array', { list: [1, undefined] }, 'input.list[1]: undefined (it would arrive as null, or not at all) cannot be carried as JSON'],
    // eslint-disable-next-line no-sparse-arrays
    ['a hole in an array', [1, , 3], 'input[1]: undefined (it would arrive as null, or not at all) cannot be carried as JSON'],
    ['undefined at the top', undefined, 'input: undefined (it would arrive as null, or not at all) cannot be carried as JSON'],
    ['a function', { f: () => 1 }, 'input.f: a function cannot be carried as JSON'],
    ['a symbol', { s: Symbol('s') }, 'input.s: a symbol cannot be carried as JSON'],
    ['NaN', { x: NaN }, 'input.x: NaN (it would arrive as null) cannot be carried as JSON'],
    ['Infinity', { 'odd key': [-Infinity] }, 'input["odd key"][0]: -Infinity (it would arrive as null) cannot be carried as JSON'],
    ['a class instance', { price: new Money(5) }, 'input.price: an instance of Money cannot be carried as JSON'],
    ['an Error', { e: new Error('x') }, 'input.e: an instance of Error cannot be carried as JSON'],
    ['a Uint8Array', { b: new Uint8Array([1]) }, 'input.b: an instance of Uint8Array cannot be carried as JSON'],
    ['an invalid Date', { at: new Date(NaN) }, 'input.at: an invalid Date cannot be carried as JSON'],
  ];
  test.each(refused)('%s', (_what, value, message) => {
    for (const f of [canonicalJson, fingerprint]) {
      let err: unknown;
      try {
        f(value);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(UnrepresentableValueError);
      expect((err as Error).message).toBe(message);
    }
  });

  test('a circular reference is refused; the same object twice (not in itself) is not', () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = { back: loop };
    expect(() => canonicalJson(loop)).toThrow('input.self.back: a circular reference cannot be carried as JSON');
    const shared = { x: 1 };
    expect(canonicalJson({ a: shared, b: [shared] })).toBe('{"a":{"x":1},"b":[{"x":1}]}');
  });

  test('two inputs that differ only in a Map no longer share a fingerprint: they are refused', () => {
    expect(() => fingerprint({ m: new Map([['a', 1]]) })).toThrow(UnrepresentableValueError);
    expect(() => fingerprint({ m: new Map([['b', 2]]) })).toThrow(UnrepresentableValueError);
  });

  test('what JSON carries keeps the text it always had: null-prototype objects, a __proto__ member, a Date as its ISO string', () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { b: 1, a: 2 });
    expect(canonicalJson(bare)).toBe('{"a":2,"b":1}');
    const parsed: unknown = JSON.parse('{"z":1,"__proto__":{"x":1}}');
    expect(canonicalJson(parsed)).toBe('{"__proto__":{"x":1},"z":1}');
    expect(canonicalJson({ at: new Date('2026-01-02T03:04:05.000Z') })).toBe('{"at":"2026-01-02T03:04:05.000Z"}');
    // The text JSON.stringify writes for plain data, so every stored fingerprint still matches.
    const plain = { s: 'é\u2028', n: -0, big: 1e21, nested: [[], {}, [null, true]] };
    expect(canonicalJson(plain)).toBe(JSON.stringify({ big: 1e21, n: -0, nested: [[], {}, [null, true]], s: 'é\u2028' }));
  });
});
