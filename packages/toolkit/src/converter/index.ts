/**
 * sagaflow/converter: Temporal payloads that refuse what JSON cannot carry.
 *
 * ```ts
 * import { strictDataConverter } from '@sagaflow/toolkit/converter';
 * const dataConverter = strictDataConverter({ payloadCodecs: [myCodec] });
 * await Worker.create({ ..., dataConverter });                  // the workflow bundle gets it too
 * new Client({ connection, dataConverter });
 * await bundleWorkflowCode({ workflowsPath, payloadConverterPath: strictPayloadConverterPath });
 * ```
 *
 * A Map, a Set, a BigInt, undefined in an array, NaN, a class instance or a cycle in a workflow's
 * or an activity's input or result then fails where it is sent, with its path, rather than
 * arriving as something else.
 */
import type { DataConverter } from '@temporalio/common';

export { payloadConverter, StrictJsonPayloadConverter, UnrepresentableValueError } from './payload-converter';

/** The module a DataConverter's `payloadConverterPath` (or bundleWorkflowCode's) names for the strict converter. */
export const strictPayloadConverterPath: string = require.resolve('./payload-converter');

/** `base` (its codecs, its failure converter) with the strict payload converter. */
export function strictDataConverter(base: DataConverter = {}): DataConverter {
  return { ...base, payloadConverterPath: strictPayloadConverterPath };
}
