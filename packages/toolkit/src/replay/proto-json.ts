/**
 * History JSON ⇄ History, through the protobufjs copy that @temporalio/proto itself loads.
 *
 * `historyFromJSON`/`historyToJSON` of @temporalio/common resolve `protobufjs/ext/protojson`
 * from @temporalio/common's own folder. In an ordinary project npm hoists protobufjs 7 (from
 * @grpc/proto-loader) and gives @temporalio/common and @temporalio/proto each a nested copy of
 * protobufjs 8: two copies, so the type the converter gets is not a `Type` of its own copy and
 * every call throws `TypeError: type must be a Type`. Resolving the converter from
 * @temporalio/proto's folder makes the converter and the types one copy, however npm laid the
 * tree out. Where @temporalio/proto's protobufjs has no JSON converter (an older protobufjs),
 * @temporalio/common's functions are used as they are.
 */
import path from 'node:path';
import type { temporal } from '@temporalio/proto';
import * as commonProtoUtils from '@temporalio/common/lib/proto-utils';

type History = temporal.api.history.v1.History;
interface ProtoJson {
  fromJson(type: unknown, json: unknown, options?: { ignoreUnknownFields?: boolean }): unknown;
  toJson(type: unknown, message: unknown): unknown;
}
interface Converter {
  fromJson(json: unknown): History;
  toJson(history: History): string;
}

let converter: Converter | undefined;

function load(): Converter {
  /* eslint-disable @typescript-eslint/no-require-imports -- resolved at run time from @temporalio/proto's own folder */
  const protoMain = require.resolve('@temporalio/proto');
  let protojson: ProtoJson;
  try {
    protojson = require(require.resolve('protobufjs/ext/protojson', { paths: [path.dirname(protoMain)] })) as ProtoJson;
  } catch {
    return { fromJson: (json) => commonProtoUtils.historyFromJSON(json) as History, toJson: (h) => commonProtoUtils.historyToJSON(h as Parameters<typeof commonProtoUtils.historyToJSON>[0]) };
  }
  const proto = require('@temporalio/proto') as typeof import('@temporalio/proto');
  const { patchProtobufRoot } = require('@temporalio/proto/lib/patch-protobuf-root') as { patchProtobufRoot<T>(root: T): T & { lookupType(name: string): unknown } };
  /* eslint-enable @typescript-eslint/no-require-imports */
  const historyType = patchProtobufRoot(proto).lookupType('temporal.api.history.v1.History');
  return {
    fromJson(json) {
      if (typeof json !== 'object' || json === null || !Array.isArray((json as { events?: unknown }).events)) {
        throw new TypeError('Invalid history, expected an object with an array of events');
      }
      const loaded = protojson.fromJson(historyType, normalizeEnums(json as { events: Record<string, unknown>[] }), { ignoreUnknownFields: true });
      if (loaded == null) throw new TypeError('Invalid history');
      return loaded as History;
    },
    toJson: (history) => JSON.stringify(protojson.toJson(historyType, proto.temporal.api.history.v1.History.fromObject(history)), null, 2),
  };
}

/** A history in Temporal's JSON form (as `temporal workflow show --output json` and the UI write it) as a History. */
export function historyFromJson(json: unknown): History {
  converter ??= load();
  return converter.fromJson(json);
}

/** A History in Temporal's JSON form, the one every Temporal tool reads. */
export function historyToJson(history: History): string {
  converter ??= load();
  return converter.toJson(history);
}

/**
 * Older tools wrote enum values in PascalCase without their prefix (`WorkflowExecutionStarted`
 * for `EVENT_TYPE_WORKFLOW_EXECUTION_STARTED`); the JSON converter takes only the proto names.
 */
function normalizeEnums(history: { events: Record<string, unknown>[] }): { events: Record<string, unknown>[] } {
  const constantCase = (s: string) => s.replace(/[^\b][A-Z]/g, (m) => `${m[0]}_${m[1]}`).toUpperCase();
  const fix = (obj: Record<string, unknown> | undefined, attr: string, prefix: string): Record<string, unknown> => {
    const value = obj?.[attr];
    return typeof value === 'string' ? { [attr]: value.startsWith(prefix) ? value : `${prefix}_${constantCase(value)}` } : {};
  };
  return {
    events: history.events.map((event) => {
      const kind = Object.keys(event).find((k) => k.endsWith('EventAttributes'));
      if (!kind) throw new TypeError(`Missing attributes in history event: ${JSON.stringify(event)}`);
      const attributes = event[kind] as Record<string, unknown>;
      const taskQueue = attributes.taskQueue as Record<string, unknown> | undefined;
      const childFailure = attributes.childWorkflowExecutionFailureInfo as Record<string, unknown> | undefined;
      return {
        ...event,
        ...fix(event, 'eventType', 'EVENT_TYPE'),
        [kind]: {
          ...attributes,
          ...(taskQueue && { taskQueue: { ...taskQueue, ...fix(taskQueue, 'kind', 'TASK_QUEUE_KIND') } }),
          ...fix(attributes, 'parentClosePolicy', 'PARENT_CLOSE_POLICY'),
          ...fix(attributes, 'workflowIdReusePolicy', 'WORKFLOW_ID_REUSE_POLICY'),
          ...fix(attributes, 'initiator', 'CONTINUE_AS_NEW_INITIATOR'),
          ...fix(attributes, 'retryState', 'RETRY_STATE'),
          ...(childFailure && { childWorkflowExecutionFailureInfo: { ...childFailure, ...fix(childFailure, 'retryState', 'RETRY_STATE') } }),
        },
      };
    }),
  };
}
