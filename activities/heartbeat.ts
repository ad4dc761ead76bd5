import { Context } from '@temporalio/activity';

/**
 * Heartbeats every second while `work` runs, so a worker that dies mid-call is
 * noticed within the heartbeat timeout and the attempt moves to another worker.
 * Outside an activity (a script, a unit test) it just awaits the work.
 */
export async function withHeartbeat<T>(work: (signal?: AbortSignal) => Promise<T>): Promise<T> {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return work();
  }
  ctx.heartbeat();
  const timer = setInterval(() => ctx.heartbeat(), 1000);
  try {
    return await work(ctx.cancellationSignal);
  } finally {
    clearInterval(timer);
  }
}
