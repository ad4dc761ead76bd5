import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import type { UpdateDefinition } from '@temporalio/common';
import type { CancelRequest, CancelResponse } from '../../packages/toolkit/src/workflow';
import type { NodeProcess } from './worker-process';

/**
 * One saga whose first workflow task is lost: `dying` is a worker process that
 * SIGKILLs itself the moment a chosen local activity settles. Once it is dead, a
 * cancel is sent if asked (it waits on the server and reaches the saga with the
 * task's retry, before any step runs again), then `survivor` starts a worker
 * that takes the retry, and the saga is run to its end.
 */
export async function runWithLostTask<R>(opts: {
  dying: NodeProcess;
  start: () => Promise<WorkflowHandle>;
  survivor: () => Promise<() => Promise<void>>;
  /** The saga's cancel update, to send before the retry; none when absent. */
  cancel?: { update: UpdateDefinition<CancelResponse, [CancelRequest]>; reason: string };
}): Promise<{ result: R; cancel?: string }> {
  const { dying } = opts;
  try {
    await dying.ready;
    const handle = await opts.start();
    await dying.exited;
    if (dying.child.signalCode !== 'SIGKILL') throw new Error(`the worker did not die where it should have:\n${dying.output()}`);
    const cancel = opts.cancel;
    const answer = cancel ? sendCancel(handle, cancel) : undefined;
    if (answer) await new Promise((r) => setTimeout(r, 500));
    const stop = await opts.survivor();
    try {
      return { result: (await handle.result()) as R, cancel: await answer };
    } finally {
      await stop();
    }
  } finally {
    if (dying.child.exitCode === null && dying.child.signalCode === null) dying.child.kill('SIGKILL');
  }
}

/**
 * The cancel, as a client sends it: accepted, or refused with the saga's reason. The server admits
 * an update while the lost task's attempt still counts as running (until its workflow task timeout)
 * and delivers it with the retry; once it has marked the task timed out it refuses updates
 * (FAILED_PRECONDITION, "Workflow Task in failed state") until a retry completes, as the API's
 * clients see as a 503. Then the cancel is sent again, as they would.
 */
async function sendCancel(
  handle: WorkflowHandle,
  cancel: { update: UpdateDefinition<CancelResponse, [CancelRequest]>; reason: string },
): Promise<string> {
  for (;;) {
    try {
      await handle.executeUpdate(cancel.update, { args: [{ reason: cancel.reason }] });
      return 'accepted';
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) return `refused: ${err.cause?.message ?? err.message}`;
      if (!/Workflow Task in failed state/.test(String((err as { cause?: unknown }).cause ?? err))) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Runs the tasks at most `n` at once (each spawns a worker process), results in order. */
export async function atMost<T>(n: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < tasks.length) {
        const i = next++;
        results[i] = await tasks[i]!();
      }
    }),
  );
  return results;
}
