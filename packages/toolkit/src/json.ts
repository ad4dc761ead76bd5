/**
 * What JSON can carry, decided in one place for the ledger's fingerprints and for the strict
 * payload converter. No Node.js import: the payload converter runs inside Temporal's workflow
 * sandbox as well.
 */

/**
 * A value JSON cannot carry faithfully: Temporal's payload converter and PostgreSQL's jsonb would
 * turn it into something else (a Map or a Set into `{}`, NaN into null, a class instance into its
 * bare fields), so two different inputs would look the same. Named by its path, e.g.
 * `input.items[2].meta: a Map cannot be carried as JSON`.
 */
export class UnrepresentableValueError extends Error {
  /** The failure type a saga reports when a step's input was refused (sagaflow/workflow's describeFailure reads it). */
  readonly type = 'UnrepresentableValue';
  constructor(
    readonly path: string,
    what: string,
  ) {
    super(`${path}: ${what} cannot be carried as JSON`);
    this.name = 'UnrepresentableValueError';
  }
}

/**
 * `value` as JSON would carry it, checked: members whose value is undefined are dropped, as
 * JSON.stringify drops them; a Date is its ISO string. Anything else JSON cannot carry as it is
 * (a Map, a Set, a BigInt, a function, a symbol, undefined in an array or at the top, NaN or an
 * infinity, an instance of a class, a circular reference) throws UnrepresentableValueError naming
 * its path from `root`. With `sortKeys`, object keys are sorted at every depth (a fingerprint's
 * text); without, they keep their order (a payload's text, byte for byte what JSON.stringify gives).
 */
export function jsonValue(value: unknown, root: string, sortKeys: boolean): unknown {
  return carried(value, root, new Set(), sortKeys);
}

function carried(value: unknown, path: string, ancestors: Set<object>, sortKeys: boolean): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw new UnrepresentableValueError(path, `${String(value)} (it would arrive as null)`);
      return value;
    case 'bigint':
      throw new UnrepresentableValueError(path, 'a BigInt');
    case 'function':
      throw new UnrepresentableValueError(path, 'a function');
    case 'symbol':
      throw new UnrepresentableValueError(path, 'a symbol');
    case 'undefined':
      throw new UnrepresentableValueError(path, 'undefined (it would arrive as null, or not at all)');
  }
  if (value === null) return null;
  const obj = value as object;
  if (obj instanceof Date || Object.prototype.toString.call(obj) === '[object Date]') {
    const iso = (obj as Date).toJSON();
    if (iso === null) throw new UnrepresentableValueError(path, 'an invalid Date');
    return iso;
  }
  if (ancestors.has(obj)) throw new UnrepresentableValueError(path, 'a circular reference');
  ancestors.add(obj);
  try {
    if (Array.isArray(obj)) {
      const out: unknown[] = [];
      for (let i = 0; i < obj.length; i++) {
        // A hole reads as undefined, and is refused as one.
        out.push(carried(obj[i], `${path}[${i}]`, ancestors, sortKeys));
      }
      return out;
    }
    const kind = nonPlainKind(obj);
    if (kind) throw new UnrepresentableValueError(path, kind);
    const rec = obj as Record<string, unknown>;
    const keys = Object.keys(rec);
    if (sortKeys) keys.sort();
    const entries: [string, unknown][] = [];
    for (const k of keys) {
      const member = rec[k];
      if (member === undefined) continue;
      entries.push([k, carried(member, memberPath(path, k), ancestors, sortKeys)]);
    }
    // fromEntries defines own members: a `__proto__` key (JSON.parse makes one) stays a member.
    return Object.fromEntries(entries);
  } finally {
    ancestors.delete(obj);
  }
}

/** What a non-plain object is, for the message; undefined for a plain one (from any realm: workflow code runs in its own). */
function nonPlainKind(obj: object): string | undefined {
  const proto = Object.getPrototypeOf(obj) as object | null;
  if (proto === null) return undefined;
  const tag = Object.prototype.toString.call(obj).slice(8, -1);
  if (tag === 'Map') return 'a Map';
  if (tag === 'Set') return 'a Set';
  if (Object.getPrototypeOf(proto) === null && tag === 'Object') return undefined;
  const name = (proto as { constructor?: { name?: unknown } }).constructor?.name;
  return `an instance of ${typeof name === 'string' && name ? name : tag}`;
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function memberPath(path: string, key: string): string {
  return IDENTIFIER.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}
