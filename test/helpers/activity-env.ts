import { randomUUID } from 'node:crypto';
import type { Logger } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { parseStepKey } from '../../packages/toolkit/src/workflow/keys';

/** Expected failures are the point of most activity tests: the SDK's per-failure WARN would bury the report. */
export const quietActivityLogger = new DefaultLogger('ERROR');

/**
 * An Activity Context as a worker gives one to the activity that `input` is for: its workflow
 * execution is the workflow its step key names (with a run ID of its own), so the ledger checks
 * the key against it as it does on a real worker. An input without a valid key gets a workflow
 * no key names.
 */
export function activityEnvFor(input: unknown, logger: Logger = quietActivityLogger): MockActivityEnvironment {
  const key = (input as { key?: unknown } | null)?.key;
  let workflowId = 'no-saga';
  if (typeof key === 'string') {
    try {
      workflowId = parseStepKey(key).workflowId;
    } catch {
      // not a step key: the ledger refuses it before it looks at the workflow
    }
  }
  return new MockActivityEnvironment({ workflowExecution: { workflowId, runId: randomUUID() } }, { logger });
}

/** Runs one activity the way a worker would: inside the Activity Context of its input's saga. */
export function runActivity<A, R>(fn: (input: A) => Promise<R>, input: A): Promise<R> {
  return activityEnvFor(input).run(fn, input);
}
