import type { ActivityOptions, LocalActivityOptions } from '@temporalio/workflow';

/** How the order saga calls each kind of activity; the benchmark's comparison sagas call theirs the same way. */

const retry = { initialInterval: '200ms', backoffCoefficient: 2, maximumInterval: '5s' } as const;

// Local steps are fast transactions. Ten attempts (about 30 s of backoff) ride out a terminated
// connection or a PostgreSQL restart instead of compensating an order for a database blip.
export const localStep: ActivityOptions = { startToCloseTimeout: '10s', retry: { ...retry, maximumAttempts: 10 } };
// External steps: transient provider failures (and database blips around the call) are
// retried with backoff up to a bound (about 6 s), then the saga compensates. A worker that dies mid-call stops
// heartbeating, so its attempt moves to another worker within the heartbeat timeout.
/** How many attempts an external step gets before the saga compensates. */
export const EXTERNAL_STEP_ATTEMPTS = 6;
export const externalStep: ActivityOptions = {
  startToCloseTimeout: '15s',
  heartbeatTimeout: '5s',
  retry: { ...retry, maximumAttempts: EXTERNAL_STEP_ATTEMPTS },
};
// One round of a compensation; the saga helper keeps starting new rounds until it succeeds.
export const compensationRound: ActivityOptions = {
  startToCloseTimeout: '15s',
  heartbeatTimeout: '5s',
  retry: { ...retry, maximumAttempts: 3 },
};

// The database-only steps as local activities, in the workflow's own worker: no task queue
// round trip, no extra workflow task per step. Same attempts and backoff as their remote
// form; a local activity cannot heartbeat, and needs none: each is one short transaction.
export const localDatabaseStep: LocalActivityOptions = { startToCloseTimeout: '10s', retry: { ...retry, maximumAttempts: 10 } };
export const localDatabaseUndo: LocalActivityOptions = { startToCloseTimeout: '15s', retry: { ...retry, maximumAttempts: 3 } };

// The provider and carrier calls as local activities (orderSagaV2): the same attempts, backoff and
// per-attempt bound as their remote form. A local activity cannot heartbeat: a worker that dies
// mid-call is noticed by the workflow task's timeout, and the SDK keeps a longer call's workflow
// task alive (it heartbeats the task), so the task's timeout need not cover the call budget.
export const localExternalStep: LocalActivityOptions = { startToCloseTimeout: '15s', retry: { ...retry, maximumAttempts: EXTERNAL_STEP_ATTEMPTS } };
// A provider or carrier undo runs like a database undo: one round of three attempts, 15 s each.
export const localExternalUndo: LocalActivityOptions = localDatabaseUndo;
