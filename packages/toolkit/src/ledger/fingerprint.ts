import { createHash } from 'node:crypto';
import { jsonValue } from '../json';

export { UnrepresentableValueError } from '../json';

/**
 * JSON with object keys sorted at every depth, so key order never changes a
 * fingerprint. Members whose value is undefined are dropped, as JSON.stringify drops them;
 * a Date is its ISO string, as JSON carries it. Anything else JSON cannot carry as it is
 * (a Map, a Set, a BigInt, a function, a symbol, undefined in an array or at the top, NaN or an
 * infinity, an instance of a class, a circular reference) throws UnrepresentableValueError naming
 * its path from `input`. For every value JSON carries, the text is what it always was, so a
 * fingerprint stored before these checks still matches.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(jsonValue(value, 'input', true));
}

/** The SHA-256 of canonicalJson(value); throws UnrepresentableValueError like it. */
export function fingerprint(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}
