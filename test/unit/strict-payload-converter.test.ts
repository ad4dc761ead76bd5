/**
 * The strict payload converter (packages/toolkit/src/converter): byte for byte the default
 * converter's payloads for every value JSON carries (so recorded histories replay unchanged), a
 * refusal by path for what the default converter would silently change.
 */
import vm from 'node:vm';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { payloadConverter, UnrepresentableValueError } from '../../packages/toolkit/src/converter';

const text = (p: Payload) => Buffer.from(p.data ?? new Uint8Array()).toString();

test('every value JSON carries gives the default converter’s payload, key order kept', () => {
  const values: unknown[] = [
    { orderId: 'o-1', items: [{ sku: 'a', qty: 2 }], z: 1, a: null, at: new Date('2026-12-07T10:00:00Z'), note: 'é\u0000x', skip: undefined },
    [1, 'two', null, { nested: [true, false] }],
    'plain',
    0,
    -0.5,
    false,
    null,
    { __proto__: null, bare: 1 },
    JSON.parse('{"__proto__": {"kept": true}}'),
  ];
  for (const v of values) {
    const strict = payloadConverter.toPayload(v);
    const plain = defaultPayloadConverter.toPayload(v);
    expect(strict.metadata).toEqual(plain.metadata);
    expect(text(strict)).toBe(text(plain));
    expect(payloadConverter.fromPayload(strict)).toEqual(defaultPayloadConverter.fromPayload(plain));
  }
  // undefined and bytes go to their own converters, as by default.
  expect(payloadConverter.toPayload(undefined)).toEqual(defaultPayloadConverter.toPayload(undefined));
  const bytes = new Uint8Array([1, 2, 3]);
  expect(payloadConverter.toPayload(bytes)).toEqual(defaultPayloadConverter.toPayload(bytes));
});

test('what the default converter changes silently is refused, naming the path', () => {
  class Money {
    constructor(readonly cents: number) {}
  }
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  const cases: [unknown, string][] = [
    [{ items: [{}, { meta: new Map([['gift', true]]) }] }, 'payload.items[1].meta: a Map cannot be carried as JSON'],
    [{ tags: new Set(['a']) }, 'payload.tags: a Set cannot be carried as JSON'],
    [{ amount: 10n }, 'payload.amount: a BigInt cannot be carried as JSON'],
    [{ list: [1, undefined] }, 'payload.list[1]: undefined (it would arrive as null, or not at all) cannot be carried as JSON'],
    [{ fn: () => 1 }, 'payload.fn: a function cannot be carried as JSON'],
    [{ ratio: NaN }, 'payload.ratio: NaN (it would arrive as null) cannot be carried as JSON'],
    [{ price: new Money(5) }, 'payload.price: an instance of Money cannot be carried as JSON'],
    [{ 'odd key': new Map() }, 'payload["odd key"]: a Map cannot be carried as JSON'],
    [cycle, 'payload.self: a circular reference cannot be carried as JSON'],
  ];
  for (const [value, message] of cases) {
    expect(() => payloadConverter.toPayload(value)).toThrow(UnrepresentableValueError);
    expect(() => payloadConverter.toPayload(value)).toThrow(message);
  }
  // The default converter: a Map and a Set arrive as {}, NaN as null, the instance as its fields.
  const changed = defaultPayloadConverter.fromPayload(defaultPayloadConverter.toPayload({ m: new Map([['a', 1]]), s: new Set([1]), n: NaN }));
  expect(changed).toEqual({ m: {}, s: {}, n: null });
});

test('values from another realm (the workflow sandbox) are judged by what they are', () => {
  const sandboxed = vm.runInNewContext('({ plain: { a: [1, 2] }, at: new Date(0), meta: new Map() })') as Record<string, unknown>;
  expect(text(payloadConverter.toPayload({ plain: sandboxed.plain, at: sandboxed.at }))).toBe('{"plain":{"a":[1,2]},"at":"1970-01-01T00:00:00.000Z"}');
  expect(() => payloadConverter.toPayload({ meta: sandboxed.meta })).toThrow('payload.meta: a Map cannot be carried as JSON');
});
