/**
 * The strict payload converter: Temporal's default converter (undefined, binary, JSON) except
 * that a value JSON cannot carry faithfully is refused instead of silently changed. The default
 * JSON converter sends a Map or a Set as `{}`, NaN as null and a class instance as its bare
 * fields, so an activity would receive, and the ledger fingerprint, something other than what
 * the workflow sent; this one throws UnrepresentableValueError naming the path, e.g.
 * `payload.items[2].meta: a Map cannot be carried as JSON`. Every value JSON carries gives the
 * same bytes as the default converter, so recorded histories replay unchanged.
 *
 * This module runs in the workflow sandbox too: point a DataConverter's `payloadConverterPath`
 * at it (strictPayloadConverterPath from `@sagaflow/toolkit/converter`), on every worker, client
 * and replay alike.
 */
import {
  BinaryPayloadConverter,
  CompositePayloadConverter,
  JsonPayloadConverter,
  UndefinedPayloadConverter,
  type Payload,
} from '@temporalio/common';
import { jsonValue } from '../json';

export { UnrepresentableValueError } from '../json';

/** JSON for plain values only: refuses, by path, what JSON would change. */
export class StrictJsonPayloadConverter extends JsonPayloadConverter {
  override toPayload(value: unknown): Payload | undefined {
    if (value === undefined) return undefined;
    return super.toPayload(jsonValue(value, 'payload', false));
  }
}

/** The converter Temporal loads from `payloadConverterPath` (it looks for this export's name). */
export const payloadConverter = new CompositePayloadConverter(
  new UndefinedPayloadConverter(),
  new BinaryPayloadConverter(),
  new StrictJsonPayloadConverter(),
);
