/**
 * The generic saga helper (packages/toolkit/src/workflow) on the real Temporal dev server and
 * real PostgreSQL: scripted sagas whose every run and undo is an activity that
 * journals the call in Postgres. Order, counts and overlap are read from the
 * journal rows, never from logs or the test's wall clock.
 */
import { WorkflowFailedError, WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { bundleWorkflowCode, Worker, type WorkflowBundle } from '@temporalio/worker';
import { createJournalActivities, JOURNAL_DDL, readJournal, type JournalRow } from '../fixtures/saga/activities';
import { ScriptedFailureType, type SagaScript, type ScriptedStep } from '../fixtures/saga/types';
import { cancelUpdate, requestCancelAnswersQuery, requestCancelSignal, scriptedSaga, statusQuery, transitionsQuery } from '../fixtures/saga/workflows';
import { RERUN_ANSWERED_STEP_PATCH, sagaResolveUpdate, sagaRetryCompensationUpdate, type SagaCause, type SagaStatus } from '../../packages/toolkit/src/workflow';
import { undoKey } from '../../packages/toolkit/src/workflow/keys';
import { createLedger } from '../../packages/toolkit/src/ledger/ledger';
import { createTestContext, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
/** The scripted sagas, bundled once for every worker of this file. */
let workflowBundle: WorkflowBundle;
const taskQueue = uniqueId('saga-helper');

beforeAll(async () => {
  ctx = await createTestContext('saga_helper');
  await ctx.db.query(JOURNAL_DDL);
  workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../fixtures/saga/workflows') });
  const worker = await Worker.create({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue,
    workflowBundle,
    activities: createJournalActivities(ctx.db),
    maxConcurrentActivityTaskExecutions: 50,
    dataConverter: ctx.dataConverter,
  });
  ctx.startWorker(worker);
});

afterAll(async () => {
  await ctx?.close();
});

type Handle = WorkflowHandle<typeof scriptedSaga>;

function start(script: SagaScript, workflowId = uniqueId('scripted')): Promise<Handle> {
  return ctx.client.workflow.start(scriptedSaga, { workflowId, taskQueue, args: [script] });
}

/** The updates the run's history accepted: a cancel its validator refused never reaches history. */
async function acceptedUpdates(handle: Handle): Promise<number> {
  const { events } = await handle.fetchHistory();
  return (events ?? []).filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length;
}

const journal = (handle: Handle): Promise<JournalRow[]> => readJournal(ctx.db, handle.workflowId);
/** [action, step, outcome] in the order the calls started. */
const calls = (rows: JournalRow[]) => rows.map((r) => [r.action, r.step, r.outcome]);
const comp = (name: string, extra: Partial<ScriptedStep> = {}): ScriptedStep => ({ name, kind: 'compensatable', ...extra });

/** Polls until pred holds; bounded by a number of rounds, not asserted on time. */
async function eventually<T>(read: () => Promise<T>, pred: (v: T) => boolean, what: string): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = await read();
    if (pred(v)) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`never reached: ${what}`);
}

/** Walks err.cause down to the ApplicationFailure that says what happened. */
function applicationFailureOf(err: unknown): ApplicationFailure | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof ApplicationFailure) return e;
  }
  return undefined;
}

async function failureOfResult(handle: Handle): Promise<{ err: unknown; app: ApplicationFailure | undefined }> {
  const err = await handle.result().then(
    (outcome) => {
      throw new Error(`expected the workflow to fail, it returned ${JSON.stringify(outcome)}`);
    },
    (e: unknown) => e,
  );
  return { err, app: applicationFailureOf(err) };
}

test.concurrent('forward path: every step runs once, in order, nothing is undone', async () => {
  const handle = await start({
    steps: [comp('a'), comp('b'), { name: 'p', kind: 'pivot' }, { name: 'r', kind: 'retriable' }],
  });
  const outcome = await handle.result();

  expect(outcome).toEqual({
    status: 'completed',
    result: ['a', 'b', 'p', 'r'],
    completedSteps: ['a', 'b', 'p', 'r'],
    compensations: [],
  });
  const rows = await journal(handle);
  expect(calls(rows)).toEqual([
    ['run', 'a', 'ok'],
    ['run', 'b', 'ok'],
    ['run', 'p', 'ok'],
    ['run', 'r', 'ok'],
  ]);
  expect(rows.every((r) => r.attempt === 1)).toBe(true);
  const status = await handle.query(statusQuery);
  expect(status).toMatchObject({ phase: 'completed', pivotStarted: true, pivotCompleted: true, currentStep: null, retries: [] });
});

describe('a business failure at each position of a 3-step compensatable saga', () => {
  const names = ['a', 'b', 'c'] as const;
  test.concurrent.each([0, 1, 2])('failure at step %i: it and the steps before it are undone in reverse order', async (failAt) => {
    const handle = await start({
      steps: names.map((n, i) => comp(n, i === failAt ? { failWith: 'business' } : {})),
    });
    const outcome = await handle.result();

    const before = names.slice(0, failAt);
    const undone = names.slice(0, failAt + 1).reverse();
    expect(outcome.status).toBe('compensated');
    if (outcome.status === 'completed') throw new Error('unreachable');
    expect(outcome.failure.type).toBe(ScriptedFailureType.business);
    expect(outcome.failure.message).toContain(`${names[failAt]} refused`);
    expect(outcome.completedSteps).toEqual(before);
    expect(outcome.compensations).toEqual(undone.map((step) => ({ step, status: 'done', attempts: 1 })));

    const rows = await journal(handle);
    expect(calls(rows)).toEqual([
      ...before.map((s) => ['run', s, 'ok']),
      ['run', names[failAt], 'failed'],
      ...undone.map((s) => ['undo', s, 'ok']),
    ]);
    // Steps after the failure never ran at all.
    const ran = new Set(rows.map((r) => r.step));
    for (const later of names.slice(failAt + 1)) expect(ran.has(later)).toBe(false);
    // The undo is told why it runs.
    for (const r of rows.filter((r) => r.action === 'undo')) expect(r.detail).toBe(`failed:${ScriptedFailureType.business}`);
  });
});

describe('parallel compensation', () => {
  const undoMs = 500;
  const script = (parallelCompensation: boolean): SagaScript => ({
    parallelCompensation,
    steps: [
      comp('a', { undoSlowMs: undoMs }),
      comp('b', { undoSlowMs: undoMs }),
      comp('c', { undoSlowMs: undoMs }),
      // A failing pivot without an undo: only a, b and c have something to undo.
      { name: 'd', kind: 'pivot', failWith: 'business', noUndo: true },
    ],
  });

  test.concurrent('all undos run, overlapping in time', async () => {
    const handle = await start(script(true));
    const outcome = await handle.result();

    expect(outcome.status).toBe('compensated');
    expect(outcome.compensations.map((c) => [c.step, c.status, c.attempts]).sort()).toEqual([
      ['a', 'done', 1],
      ['b', 'done', 1],
      ['c', 'done', 1],
    ]);
    const undos = (await journal(handle)).filter((r) => r.action === 'undo');
    expect(undos.map((r) => [r.step, r.outcome]).sort()).toEqual([
      ['a', 'ok'],
      ['b', 'ok'],
      ['c', 'ok'],
    ]);
    const starts = undos.map((r) => r.startedAt.getTime());
    const ends = undos.map((r) => r.finishedAt!.getTime());
    // Every undo started before any of them finished: they all overlapped.
    expect(Math.max(...starts)).toBeLessThan(Math.min(...ends));
    const span = Math.max(...ends) - Math.min(...starts);
    const sum = undos.reduce((acc, r) => acc + (r.finishedAt!.getTime() - r.startedAt.getTime()), 0);
    expect(span).toBeLessThan(sum * (2 / 3));
  });

  test.concurrent('control: sequential compensation runs the same undos one after another, in reverse order', async () => {
    const handle = await start(script(false));
    expect((await handle.result()).status).toBe('compensated');
    const undos = (await journal(handle)).filter((r) => r.action === 'undo');
    expect(undos.map((r) => r.step)).toEqual(['c', 'b', 'a']);
    for (let i = 1; i < undos.length; i++) {
      expect(undos[i]!.startedAt.getTime()).toBeGreaterThanOrEqual(undos[i - 1]!.finishedAt!.getTime());
    }
  });
});

test.concurrent('a compensation that fails twice is retried until it succeeds, each attempt visible', async () => {
  const handle = await start({ steps: [comp('a', { undoFailsTimes: 2 }), comp('b', { failWith: 'business' })] });
  const outcome = await handle.result();

  expect(outcome.status).toBe('compensated');
  const rows = await journal(handle);
  expect(calls(rows)).toEqual([
    ['run', 'a', 'ok'],
    ['run', 'b', 'failed'],
    ['undo', 'b', 'ok'],
    ['undo', 'a', 'failed'],
    ['undo', 'a', 'failed'],
    ['undo', 'a', 'ok'],
  ]);
  expect(rows.filter((r) => r.action === 'undo' && r.step === 'a').map((r) => r.attempt)).toEqual([1, 2, 3]);

  const status = await handle.query(statusQuery);
  expect(status.phase).toBe('compensated');
  expect(status.compensations).toEqual([
    { step: 'b', status: 'done', attempts: 1 },
    { step: 'a', status: 'done', attempts: 3, lastError: expect.stringContaining('undo of a failed (attempt 2)') },
  ]);
  expect(outcome.compensations).toEqual(status.compensations);
});

describe('a compensation that fails permanently', () => {
  test.concurrent.each([false, true])('does not stop the others, and fails the workflow with CompensationFailed (parallel: %s)', async (parallel) => {
    const handle = await start({
      parallelCompensation: parallel,
      steps: [comp('a'), comp('b', { undoFailsPermanently: true }), comp('c', { failWith: 'business' })],
    });
    const { err, app } = await failureOfResult(handle);

    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(app).toBeDefined();
    expect(app!.type).toBe('CompensationFailed');
    expect(app!.nonRetryable).toBe(true);
    expect(app!.message).toContain('1 compensation(s) failed');
    expect(app!.message).toContain('b: undo of b is impossible');
    // Its details say what the saga unwound for and how each compensation ended.
    const [detail] = (app!.details ?? []) as { failure: { type: string }; compensations: { step: string; status: string }[] }[];
    expect(detail?.failure.type).toBe(ScriptedFailureType.business);
    expect(detail?.compensations.map((c) => [c.step, c.status]).sort()).toEqual([
      ['a', 'done'],
      ['b', 'failed'],
      ['c', 'done'],
    ]);

    const undos = (await journal(handle)).filter((r) => r.action === 'undo');
    const seen = undos.map((r) => [r.step, r.outcome]);
    if (parallel) {
      expect(seen.sort()).toEqual([
        ['a', 'ok'],
        ['b', 'failed'],
        ['c', 'ok'],
      ]);
    } else {
      expect(seen).toEqual([
        ['c', 'ok'],
        ['b', 'failed'],
        ['a', 'ok'],
      ]);
    }
    // A permanent failure is not retried.
    expect(undos.filter((r) => r.step === 'b')).toHaveLength(1);

    const status = await handle.query(statusQuery);
    expect(status.phase).toBe('failed');
    expect(status.failure?.type).toBe(ScriptedFailureType.business);
    expect([...status.compensations].sort((x, y) => x.step.localeCompare(y.step))).toEqual([
      { step: 'a', status: 'done', attempts: 1 },
      { step: 'b', status: 'failed', attempts: 1, lastError: 'undo of b is impossible' },
      { step: 'c', status: 'done', attempts: 1 },
    ]);
  });

  test.concurrent('is handed to onCompensationFailed before the next compensation runs, and handed again until the record succeeds', async () => {
    const handle = await start({
      recordFailedCompensations: { failsTimes: 2 },
      steps: [comp('a'), comp('b', { undoFailsPermanently: true }), comp('c', { failWith: 'business' })],
    });
    const { app } = await failureOfResult(handle);
    expect(app?.type).toBe('CompensationFailed');

    const seen = (await journal(handle)).filter((r) => r.action !== 'run').map((r) => [r.step, r.action, r.outcome]);
    expect(seen).toEqual([
      ['c', 'undo', 'ok'],
      ['b', 'undo', 'failed'],
      ['b', 'record', 'failed'],
      ['b', 'record', 'failed'],
      ['b', 'record', 'ok'],
      ['a', 'undo', 'ok'],
    ]);
    // The hook is told the failure the compensation met, not the one the saga unwound for.
    const { rows } = await ctx.db.query<{ detail: string }>(`SELECT DISTINCT detail FROM journal WHERE run_key = $1 AND action = 'record'`, [handle.workflowId]);
    expect(rows).toEqual([{ detail: ScriptedFailureType.undoPermanent }]);
  });

  test.concurrent("whose record keeps failing is handed again after the saga's growing backoff", async () => {
    const handle = await start({
      recordFailedCompensations: { failsTimes: 4 },
      steps: [comp('b', { undoFailsPermanently: true }), comp('c', { failWith: 'business' })],
    });
    await failureOfResult(handle);
    const records = (await journal(handle)).filter((r) => r.action === 'record');
    expect(records.map((r) => r.outcome)).toEqual(['failed', 'failed', 'failed', 'failed', 'ok']);
    // Timers never fire early: between the first failure and the last try lie at least the waits
    // after attempts 1 to 4 (100, 200, 400, then 400 ms at the script's cap).
    const waited = records[4]!.startedAt.getTime() - records[0]!.finishedAt!.getTime();
    expect(waited).toBeGreaterThanOrEqual(100 + 200 + 400 + 400);
  });

  test.concurrent('whose record fails for good too: the saga goes on unwinding and ends CompensationFailed, naming the step', async () => {
    const handle = await start({
      recordFailedCompensations: { failsPermanently: true },
      steps: [comp('a'), comp('b', { undoFailsPermanently: true }), comp('c', { failWith: 'business' })],
    });
    const { app } = await failureOfResult(handle);
    expect(app?.type).toBe('CompensationFailed');
    expect(app?.message).toContain('b: undo of b is impossible');
    const seen = (await journal(handle)).filter((r) => r.action !== 'run').map((r) => [r.step, r.action, r.outcome]);
    expect(seen).toEqual([
      ['c', 'undo', 'ok'],
      ['b', 'undo', 'failed'],
      ['b', 'record', 'failed'],
      ['a', 'undo', 'ok'],
    ]);
  });
});

describe('a saga held for an operator (holdForOperator)', () => {
  const by = { by: 'cli:ada', note: 'refund limit raised' };
  const held = (handle: Handle) => eventually(() => handle.query(statusQuery), (st) => st.awaitingOperator === true, 'held for an operator');

  test.concurrent('a compensation that failed for good holds it; a retry while the cause stands fails again; once fixed, a retry finishes the unwinding', async () => {
    // b's undo is refused for good twice (at the saga's own round, then at the first operator retry), then succeeds.
    const handle = await start({
      holdForOperatorMs: 600_000,
      steps: [comp('a'), comp('b', { undoFailsPermanentlyTimes: 2 }), comp('c', { failWith: 'business' })],
    });
    const waiting = await held(handle);
    expect(waiting).toMatchObject({ phase: 'failed', awaitingOperator: true, failure: { type: ScriptedFailureType.business } });
    expect(waiting.compensations.map((c) => [c.step, c.status])).toEqual([
      ['c', 'done'],
      ['b', 'failed'],
      ['a', 'done'],
    ]);
    // A cancel is refused: the saga is not running.
    await expect(handle.executeUpdate(cancelUpdate, { args: [{}] })).rejects.toThrow(WorkflowUpdateFailedError);

    const first = await handle.executeUpdate(sagaRetryCompensationUpdate, { args: [by] });
    expect(first).toEqual({ retried: [], stillFailing: [{ step: 'b', error: 'undo of b is impossible (attempt 2)' }] });
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'failed', awaitingOperator: true });

    const second = await handle.executeUpdate(sagaRetryCompensationUpdate, { args: [by] });
    expect(second).toEqual({ retried: ['b'], stillFailing: [] });
    const outcome = await handle.result();
    // It ends as it would have had the undo succeeded at once, its attempts counted.
    expect(outcome).toMatchObject({ status: 'compensated', failure: { type: ScriptedFailureType.business }, completedSteps: ['a', 'b'] });
    expect(outcome.compensations).toEqual([
      { step: 'c', status: 'done', attempts: 1 },
      { step: 'b', status: 'done', attempts: 3, lastError: 'undo of b is impossible (attempt 2)' },
      { step: 'a', status: 'done', attempts: 1 },
    ]);
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'compensated', awaitingOperator: false, resolution: { how: 'retried', ...by } });
    // Each rerun was told its round; the undo of a and c ran once; the hook heard the success once.
    const rows = await journal(handle);
    expect(rows.filter((r) => r.action !== 'run').map((r) => [r.step, r.action, r.outcome, r.detail])).toEqual([
      ['c', 'undo', 'ok', `failed:${ScriptedFailureType.business}`],
      ['b', 'undo', 'failed', `failed:${ScriptedFailureType.business}`],
      ['a', 'undo', 'ok', `failed:${ScriptedFailureType.business}`],
      ['b', 'undo', 'failed', `failed:${ScriptedFailureType.business}:operator-retry-1`],
      ['b', 'undo', 'ok', `failed:${ScriptedFailureType.business}:operator-retry-2`],
      ['b', 'record', 'ok', 'retried by cli:ada'],
    ]);
    // The run's history says why it held: the patch, recorded once.
    const { events } = await handle.fetchHistory();
    const patches = (events ?? []).filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch');
    expect(patches).toHaveLength(1);
  });

  test.concurrent('a manual resolution ends it failed as CompensationFailed, the resolution in its details, and the hook told which steps', async () => {
    const handle = await start({
      holdForOperatorMs: 600_000,
      steps: [comp('a', { undoFailsPermanently: true }), comp('b', { undoFailsPermanently: true }), comp('c', { failWith: 'business' })],
    });
    await held(handle);
    // Who acts must be said; a second action waits for none (each is answered once carried out).
    await expect(handle.executeUpdate(sagaResolveUpdate, { args: [{ by: ' ' }] })).rejects.toThrow(WorkflowUpdateFailedError);
    expect(await handle.executeUpdate(sagaResolveUpdate, { args: [{ by: 'admin:ops', note: 'refunded by bank transfer' }] })).toEqual({
      resolved: true,
      steps: ['b', 'a'],
    });
    const { app } = await failureOfResult(handle);
    expect(app?.type).toBe('CompensationFailed');
    const [detail] = (app!.details ?? []) as { resolution?: unknown }[];
    expect(detail?.resolution).toEqual({ how: 'manual', by: 'admin:ops', note: 'refunded by bank transfer' });
    const records = (await journal(handle)).filter((r) => r.action === 'record').map((r) => [r.step, r.detail]);
    expect(records).toEqual([['b,a', 'resolved by admin:ops: refunded by bank transfer']]);
    // Closed: no operator action is taken any more.
    await expect(handle.executeUpdate(sagaRetryCompensationUpdate, { args: [by] })).rejects.toThrow();
  });

  test.concurrent('an operator action is refused while the saga runs or after it compensated: nothing is held', async () => {
    const handle = await start({ holdForOperatorMs: 600_000, steps: [comp('a', { slowMs: 1500 }), comp('b')] });
    await eventually(() => handle.query(statusQuery), (st) => st.currentStep === 'a', 'a in flight');
    const refusal = await handle.executeUpdate(sagaRetryCompensationUpdate, { args: [by] }).then(
      () => 'accepted',
      (e: unknown) => String((e as { cause?: { message?: string } }).cause?.message),
    );
    expect(refusal).toBe('the saga is not held for an operator: it is running (only a saga whose compensation failed for good is)');
    expect(await acceptedUpdates(handle)).toBe(0);
    expect((await handle.result()).status).toBe('completed');
  });

  test.concurrent('past its hold it fails as without one: CompensationFailed, nothing resolved', async () => {
    const handle = await start({ holdForOperatorMs: 1500, steps: [comp('a', { undoFailsPermanently: true }), comp('b', { failWith: 'business' })] });
    const { app } = await failureOfResult(handle);
    expect(app?.type).toBe('CompensationFailed');
    const [detail] = (app!.details ?? []) as { resolution?: unknown }[];
    expect(detail).not.toHaveProperty('resolution');
    expect((await journal(handle)).filter((r) => r.action === 'record')).toEqual([]);
  });
});

test.concurrent('the pivot refuses cancel: once it started, the cancel update is rejected and nothing is compensated', async () => {
  const handle = await start({
    steps: [comp('a'), { name: 'p', kind: 'pivot', slowMs: 2000 }, { name: 'r', kind: 'retriable' }],
  });
  await eventually(() => handle.query(statusQuery), (s) => s.pivotStarted, 'pivotStarted');

  const err = await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'too late' }] }).then(
    (r) => {
      throw new Error(`cancel was accepted: ${JSON.stringify(r)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
  expect((err as WorkflowUpdateFailedError).cause?.message).toContain('point of no return');
  // Refused by the validator, before the update could enter the saga's history.
  expect(await acceptedUpdates(handle)).toBe(0);

  const outcome = await handle.result();
  expect(outcome).toEqual({
    status: 'completed',
    result: ['a', 'p', 'r'],
    completedSteps: ['a', 'p', 'r'],
    compensations: [],
  });
  expect(calls(await journal(handle))).toEqual([
    ['run', 'a', 'ok'],
    ['run', 'p', 'ok'],
    ['run', 'r', 'ok'],
  ]);
  const status: SagaStatus = await handle.query(statusQuery);
  expect(status.cancelRequested).toBe(false);
  expect(status.compensations).toEqual([]);
});

test.concurrent('cancel before the pivot: accepted; the in-flight step is cancelled and undone, later steps never run', async () => {
  const handle = await start({
    steps: [comp('a'), comp('b', { slowMs: 30_000 }), { name: 'p', kind: 'pivot' }, { name: 'r', kind: 'retriable' }],
  });
  await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'b' && r.action === 'run'), 'step b in flight');

  const accepted = await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'customer changed their mind' }] });
  expect(accepted).toEqual({ accepted: true });

  const outcome = await handle.result();
  expect(outcome).toEqual({
    status: 'cancelled',
    failure: { type: 'SagaCancelled', message: 'customer changed their mind' },
    completedSteps: ['a'],
    compensations: [
      { step: 'b', status: 'done', attempts: 1 },
      { step: 'a', status: 'done', attempts: 1 },
    ],
  });

  // The cancel reaches the activity itself (it heartbeats), so its row ends 'cancelled', never 'ok'.
  const rows = await eventually(
    () => journal(handle),
    (rs) => rs.find((r) => r.step === 'b' && r.action === 'run')?.outcome !== 'running',
    'the in-flight run of b to end',
  );
  expect(rows.find((r) => r.step === 'b' && r.action === 'run')?.outcome).toBe('cancelled');
  expect(rows.filter((r) => r.action === 'undo').map((r) => [r.step, r.outcome, r.detail])).toEqual([
    ['b', 'ok', 'cancelled:SagaCancelled'],
    ['a', 'ok', 'cancelled:SagaCancelled'],
  ]);
  expect(rows.some((r) => r.step === 'p' || r.step === 'r')).toBe(false);
  const status = await handle.query(statusQuery);
  expect(status).toMatchObject({ phase: 'cancelled', cancelRequested: true, pivotStarted: false });
});

test.concurrent('a cancel accepted while an uninterruptible step is in flight still stops the saga before the pivot', async () => {
  const handle = await start({
    steps: [comp('a', { slowMs: 1500, uninterruptible: true }), { name: 'p', kind: 'pivot' }, { name: 'r', kind: 'retriable' }],
  });
  await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'a' && r.action === 'run'), 'step a in flight');

  // The validator says cancel is still possible, so the update is accepted...
  expect(await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'stop' }] })).toEqual({ accepted: true });

  // ...and an accepted cancel must be honoured: the pivot never starts, a is undone. The pivot was
  // reached but abandoned: its undo (a no-op for an effect that never happened) still tombstones it.
  const outcome = await handle.result();
  const rows = await journal(handle);
  expect({ status: outcome.status, calls: calls(rows) }).toEqual({
    status: 'cancelled',
    calls: [
      ['run', 'a', 'ok'],
      ['undo', 'p', 'ok'],
      ['undo', 'a', 'ok'],
    ],
  });
  expect(rows.some((r) => r.step === 'p' && r.action === 'run')).toBe(false);
});

test.concurrent('a cancel accepted while an uninterruptible step runs stands at once: that step failing afterwards does not turn it into a refusal', async () => {
  const handle = await start({
    steps: [comp('b', { slowMs: 2500, uninterruptible: true, failWith: 'business' }), { name: 'p', kind: 'pivot' }],
  });
  await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'b' && r.action === 'run'), 'step b in flight');
  expect(await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'stop' }] })).toEqual({ accepted: true });
  const outcome = await handle.result();
  expect(outcome).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled', message: 'stop' }, completedSteps: [] });
  const rows = await journal(handle);
  expect(rows.find((r) => r.step === 'b' && r.action === 'run')?.outcome).toBe('failed');
  expect(rows.filter((r) => r.action === 'undo').map((r) => [r.step, r.detail])).toEqual([['b', 'cancelled:SagaCancelled']]);
});

test.concurrent('a cancel accepted while the last step runs on uninterruptibly is honoured once it ends: every step undone', async () => {
  const handle = await start({ steps: [comp('a'), comp('b', { slowMs: 2000, uninterruptible: true })] });
  await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'b' && r.action === 'run'), 'step b in flight');
  expect(await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'stop' }] })).toEqual({ accepted: true });
  expect(await handle.result()).toEqual({
    status: 'cancelled',
    failure: { type: 'SagaCancelled', message: 'stop' },
    completedSteps: ['a', 'b'],
    compensations: [
      { step: 'b', status: 'done', attempts: 1 },
      { step: 'a', status: 'done', attempts: 1 },
    ],
  });
});

describe('retriable steps after the pivot', () => {
  test.concurrent.each(['transient', 'business'] as const)('are retried until they succeed (%s failures, twice) and never compensated', async (failWith) => {
    const handle = await start({
      steps: [comp('a'), { name: 'p', kind: 'pivot' }, { name: 'r', kind: 'retriable', failWith, failTimes: 2 }],
    });
    const outcome = await handle.result();

    expect(outcome).toEqual({
      status: 'completed',
      result: ['a', 'p', 'r'],
      completedSteps: ['a', 'p', 'r'],
      compensations: [],
    });
    const rows = await journal(handle);
    expect(calls(rows)).toEqual([
      ['run', 'a', 'ok'],
      ['run', 'p', 'ok'],
      ['run', 'r', 'failed'],
      ['run', 'r', 'failed'],
      ['run', 'r', 'ok'],
    ]);
    expect(rows.filter((r) => r.step === 'r').map((r) => r.attempt)).toEqual([1, 2, 3]);
    expect(rows.some((r) => r.action === 'undo')).toBe(false);
    const status = await handle.query(statusQuery);
    expect(status.retries).toEqual([]);
    expect(status.compensations).toEqual([]);
  });

  test.concurrent('the retry record is visible in status() while the step is still failing', async () => {
    const handle = await start({
      steps: [{ name: 'p', kind: 'pivot' }, { name: 'r', kind: 'retriable', failWith: 'transient', failTimes: 3 }],
    });
    const status = await eventually(
      () => handle.query(statusQuery),
      (s) => s.retries.some((r) => r.attempts >= 2) || s.phase === 'completed',
      'a retry record with 2 attempts',
    );
    expect(status.phase).toBe('running');
    expect(status.retries).toEqual([
      { step: 'r', attempts: expect.any(Number), lastError: expect.stringContaining('r unavailable') },
    ]);
    expect((await handle.result()).status).toBe('completed');
    expect((await journal(handle)).filter((r) => r.step === 'r').map((r) => r.outcome)).toEqual(['failed', 'failed', 'failed', 'ok']);
  });
});

describe('definition errors fail the workflow with type SagaDefinition', () => {
  test.concurrent.each<[string, SagaScript['steps'], string, string]>([
    ['a retriable step first', [{ name: 'r', kind: 'retriable' }], 'r', 'retriable step r must follow a completed pivot'],
    ['a retriable step before any pivot', [comp('a'), { name: 'r', kind: 'retriable' }], 'r', 'retriable step r must follow a completed pivot'],
    ['a compensatable step after the pivot', [{ name: 'p', kind: 'pivot' }, comp('late')], 'late', 'step late cannot follow the pivot: only retriable steps can'],
    ['a compensatable step without an undo', [comp('a'), comp('bare', { noUndo: true })], 'bare', 'compensatable step bare needs an undo'],
    ['a pivot among steps run at once', [comp('a'), [comp('b'), { name: 'p', kind: 'pivot' }]], 'p', 'step p is pivot: only compensatable steps run in parallel'],
  ])('%s', async (_label, steps, offending, message) => {
    const handle = await start({ steps });
    const { err, app } = await failureOfResult(handle);

    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect([app?.type, app?.message]).toEqual(['SagaDefinition', message]);
    // The offending step is never run (nor, in a group, any step of it), and what ran before is undone.
    const rows = await journal(handle);
    expect(rows.some((r) => r.step === offending || (r.step === 'b' && r.action === 'run'))).toBe(false);
    const ranA = steps.some((st) => !Array.isArray(st) && st.name === 'a');
    expect(calls(rows).filter(([action]) => action === 'undo')).toEqual(ranA ? [['undo', 'a', 'ok']] : []);
  });
});

describe('steps at once (all)', () => {
  test.concurrent('run overlapping, both shown in flight, answered in the order given, then the saga goes on', async () => {
    const handle = await start({ steps: [comp('a'), [comp('b', { slowMs: 1200 }), comp('c', { slowMs: 1200 })], comp('d')] });
    const during = await eventually(() => handle.query(statusQuery), (st) => st.currentStep === 'b, c', 'b and c in flight');
    expect(during.completedSteps).toEqual(['a']);
    const outcome = await handle.result();
    expect(outcome).toMatchObject({ status: 'completed', result: ['a', 'b', 'c', 'd'], compensations: [] });
    expect(outcome.status === 'completed' && [outcome.completedSteps[0], [...outcome.completedSteps.slice(1, 3)].sort(), outcome.completedSteps[3]]).toEqual([
      'a',
      ['b', 'c'],
      'd',
    ]);
    const rows = await journal(handle);
    const [b, c] = ['b', 'c'].map((step) => rows.find((r) => r.step === step && r.action === 'run')!);
    expect(b!.startedAt.getTime()).toBeLessThan(c!.finishedAt!.getTime());
    expect(c!.startedAt.getTime()).toBeLessThan(b!.finishedAt!.getTime());
  });

  test.concurrent('one of the group ends first: the others are still shown in flight, as one list', async () => {
    const handle = await start({ steps: [[comp('b', { slowMs: 200 }), comp('c', { slowMs: 2500 }), comp('e', { slowMs: 2500 })]] });
    const after = await eventually(() => handle.query(statusQuery), (st) => st.completedSteps.includes('b'), 'b done');
    expect(after.currentStep).toBe('c, e');
    expect(await handle.result()).toMatchObject({ status: 'completed', result: ['b', 'c', 'e'] });
  });

  test.concurrent('one fails for good: the other settles first, every step of the group and before it is undone, nothing after runs', async () => {
    const handle = await start({ steps: [comp('a'), [comp('b', { slowMs: 800 }), comp('c', { failWith: 'business' })], comp('d')] });
    const outcome = await handle.result();
    expect(outcome).toMatchObject({ status: 'compensated', failure: { type: ScriptedFailureType.business } });
    const rows = await journal(handle);
    expect(rows.find((r) => r.step === 'b' && r.action === 'run')?.outcome).toBe('ok');
    const bDone = rows.find((r) => r.step === 'b' && r.action === 'run')!.finishedAt!.getTime();
    expect(rows.filter((r) => r.action === 'undo').every((r) => r.startedAt.getTime() >= bDone)).toBe(true);
    expect(calls(rows).filter(([action]) => action === 'undo')).toEqual([
      ['undo', 'c', 'ok'],
      ['undo', 'b', 'ok'],
      ['undo', 'a', 'ok'],
    ]);
    expect(rows.some((r) => r.step === 'd')).toBe(false);
  });
});

describe('what status() and the cancel update say while compensating', () => {
  test.concurrent('compensations done, running and pending; a first cancel is refused as "saga already compensating"', async () => {
    const handle = await start({ steps: [comp('a'), comp('b', { undoSlowMs: 1500 }), comp('c', { failWith: 'business' })] });
    const during = await eventually(
      () => handle.query(statusQuery),
      (st) => st.compensations.some((c) => c.step === 'b' && c.status === 'running'),
      'the undo of b running',
    );
    expect(during).toMatchObject({ phase: 'compensating', currentStep: null, completedSteps: ['a', 'b'], failure: { type: ScriptedFailureType.business } });
    expect(during.compensations).toEqual([
      { step: 'c', status: 'done', attempts: 1 },
      { step: 'b', status: 'running', attempts: 1 },
      { step: 'a', status: 'pending', attempts: 0 },
    ]);
    const err = await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'late' }] }).then(
      (r) => {
        throw new Error(`cancel was accepted: ${JSON.stringify(r)}`);
      },
      (e: unknown) => e,
    );
    expect((err as WorkflowUpdateFailedError).cause?.message).toBe('saga already compensating');
    expect((await handle.result()).status).toBe('compensated');
    expect(await acceptedUpdates(handle)).toBe(0);
  });

  test.concurrent('a compensation between failed rounds shows as retrying', async () => {
    const handle = await start({ steps: [comp('a', { undoFailsTimes: 4 }), comp('b', { failWith: 'business' })] });
    const retrying = await eventually(
      () => handle.query(statusQuery),
      (st) => st.compensations.some((c) => c.step === 'a' && c.status === 'retrying'),
      'the undo of a between rounds',
    );
    expect(retrying.compensations.find((c) => c.step === 'a')).toMatchObject({ status: 'retrying', lastError: expect.stringContaining('undo of a failed') });
    expect((await handle.result()).status).toBe('compensated');
  });

  test.concurrent('a cancel accepted once is accepted again while the saga unwinds for it; the first reason stands', async () => {
    const handle = await start({ steps: [comp('a', { undoSlowMs: 1500 }), comp('b', { slowMs: 30_000 })] });
    await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'b' && r.action === 'run'), 'step b in flight');
    expect(await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'first' }] })).toEqual({ accepted: true });
    await eventually(() => handle.query(statusQuery), (st) => st.phase === 'compensating', 'compensating');
    expect(await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'second' }] })).toEqual({ accepted: true });
    expect(await handle.result()).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled', message: 'first' } });
  });

  test.concurrent('a cancel without a reason is cancelled by request', async () => {
    const handle = await start({ steps: [comp('a', { slowMs: 30_000 })] });
    await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'a' && r.action === 'run'), 'step a in flight');
    expect(await handle.executeUpdate(cancelUpdate, { args: [{}] })).toEqual({ accepted: true });
    expect(await handle.result()).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled', message: 'cancelled by request' } });
  });
});

describe('an undo that can never succeed is surfaced, not retried forever', () => {
  test.concurrent('text PostgreSQL refuses (a NUL byte) fails the compensation once, as DataRejected, and the saga with CompensationFailed', async () => {
    const handle = await start({ steps: [comp('a', { undoWritesUnstorable: true }), comp('b', { failWith: 'business' })] });
    const { err, app } = await failureOfResult(handle);

    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect(app?.type).toBe('CompensationFailed');
    expect(app?.message).toContain('a: PostgreSQL refused the data');
    // One attempt, not a loop: the failure is non-retryable.
    const undosOfA = (await journal(handle)).filter((r) => r.step === 'a' && r.action === 'undo');
    expect(undosOfA.map((r) => r.outcome)).toEqual(['failed']);
    // The undo's transaction rolled back whole: no ledger record, no tombstone.
    const ledger = await ctx.db.query(`SELECT key FROM step_ledger WHERE workflow_id = $1`, [handle.workflowId]);
    expect(ledger.rows).toEqual([]);
    const status = await handle.query(statusQuery);
    expect(status.phase).toBe('failed');
    expect(status.compensations.find((c) => c.step === 'a')).toEqual(
      expect.objectContaining({ status: 'failed', attempts: 1, lastError: expect.stringContaining('SQLSTATE 22021') }),
    );
  });
});

/**
 * Starts the script on a queue no worker polls yet, sends the cancel, then starts a worker: the
 * update waits on the server and is delivered with the workflow's first task, before any step.
 * Returns the cancel's answer ('accepted', or the refusal's message), the outcome and the journal.
 */
async function cancelledBeforeFirstTask(
  script: SagaScript,
  workflowId = uniqueId('scripted'),
  howMany = 1,
): Promise<{ cancel: string; cancels: string[]; outcome: Awaited<ReturnType<Handle['result']>>; rows: JournalRow[]; status: SagaStatus }> {
  const queue = uniqueId('saga-helper-idle');
  const handle = await ctx.client.workflow.start(scriptedSaga, { workflowId, taskQueue: queue, args: [script] });
  const answers = Array.from({ length: howMany }, (_, i) =>
    handle.executeUpdate(cancelUpdate, { args: [{ reason: i === 0 ? 'too early' : `again ${i}` }] }).then(
      (r) => (r.accepted ? 'accepted' : JSON.stringify(r)),
      (e: unknown) => (e instanceof WorkflowUpdateFailedError ? `refused: ${e.cause?.message}` : Promise.reject(e)),
    ),
  );
  await new Promise((r) => setTimeout(r, 300));
  const worker = await Worker.create({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue: queue,
    workflowBundle,
    activities: createJournalActivities(ctx.db),
    dataConverter: ctx.dataConverter,
  });
  const stop = ctx.startWorker(worker);
  try {
    const cancels = await Promise.all(answers);
    const outcome = await handle.result();
    return { cancel: cancels[0]!, cancels, outcome, rows: await journal(handle), status: await handle.query(statusQuery) };
  } finally {
    await stop();
  }
}

describe('a cancel accepted before the first step', () => {
  test.concurrent('local steps still run (their effects may be in the database from a lost task); the saga stops at the first step that is not local and undoes them all', async () => {
    const { cancel, outcome, rows } = await cancelledBeforeFirstTask({
      steps: [comp('a', { local: true }), comp('b', { local: true }), comp('c'), { name: 'p', kind: 'pivot' }],
    });
    expect(cancel).toBe('accepted');
    expect(outcome.status).toBe('cancelled');
    expect(calls(rows)).toEqual([
      ['run', 'a', 'ok'],
      ['run', 'b', 'ok'],
      ['undo', 'c', 'ok'],
      ['undo', 'b', 'ok'],
      ['undo', 'a', 'ok'],
    ]);
  });

  test.concurrent('a saga of local steps only runs to its end, and the accepted cancel still undoes every step', async () => {
    const { cancel, outcome, rows } = await cancelledBeforeFirstTask({ steps: [comp('a', { local: true }), comp('b', { local: true })] });
    expect(cancel).toBe('accepted');
    expect(outcome).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled', message: 'too early' } });
    expect(calls(rows)).toEqual([
      ['run', 'a', 'ok'],
      ['run', 'b', 'ok'],
      ['undo', 'b', 'ok'],
      ['undo', 'a', 'ok'],
    ]);
  });

  test.concurrent('only compensatable local steps run on: a local pivot is not started, the saga stops before it', async () => {
    const { cancel, outcome, rows } = await cancelledBeforeFirstTask({
      steps: [comp('a', { local: true }), { name: 'p', kind: 'pivot', local: true }, { name: 'r', kind: 'retriable' }],
    });
    expect(cancel).toBe('accepted');
    expect(outcome).toMatchObject({ status: 'cancelled', completedSteps: ['a'] });
    expect(calls(rows)).toEqual([
      ['run', 'a', 'ok'],
      ['undo', 'p', 'ok'],
      ['undo', 'a', 'ok'],
    ]);
  });

  test.concurrent('abandons the step but still runs its undo, so nothing it might leave behind survives', async () => {
    const { cancel, outcome, rows } = await cancelledBeforeFirstTask({ steps: [comp('a'), comp('b')] });
    expect(cancel).toBe('accepted');
    expect(outcome.status).toBe('cancelled');
    // 'a' never ran forward; its undo ran once (a no-op tombstone for an effect that never happened).
    expect(calls(rows)).toEqual([['undo', 'a', 'ok']]);
  });
});

describe('a local step that fails on the way to an answer an earlier task got (stepAnswered)', () => {
  /** How many of the run's patch markers name RERUN_ANSWERED_STEP_PATCH. */
  const markers = async (handle: Handle) =>
    ((await handle.fetchHistory()).events ?? []).filter((e) => {
      const m = e.markerRecordedEventAttributes;
      const data = m?.markerName === 'core_patch' ? m.details?.['patch-data']?.payloads?.[0]?.data : undefined;
      if (!data) return false;
      const text = typeof data === 'string' ? Buffer.from(data, 'base64').toString() : Buffer.from(data).toString();
      return (JSON.parse(text) as { id: string }).id === RERUN_ANSWERED_STEP_PATCH;
    }).length;
  const local = (name: string, extra: Partial<ScriptedStep> = {}) => comp(name, { local: true, ...extra });

  test.concurrent('its attempts ran out on a retryable failure and the answer is recorded: it runs again, asking each time, until it answers', async () => {
    const handle = await start({ steps: [local('a'), local('b', { failWith: 'transient', failTimes: 4 }), { name: 'p', kind: 'pivot' }], stepAnswered: true });
    // Shown while it runs again (backoffs of 100, 200, 400 ms), with its last failure, as a retriable step's rounds are.
    await eventually(
      () => handle.query(statusQuery),
      (st) => st.retries.some((r) => r.step === 'b' && /^b unavailable/.test(r.lastError ?? '')),
      'b shown in status().retries',
    );
    expect(await handle.result()).toEqual({ status: 'completed', result: ['a', 'b', 'p'], completedSteps: ['a', 'b', 'p'], compensations: [] });
    expect(calls(await journal(handle))).toEqual([
      ['run', 'a', 'ok'],
      ...Array.from({ length: 4 }, () => [
        ['run', 'b', 'failed'],
        ['record', 'b', 'ok'],
      ]).flat(),
      ['run', 'b', 'ok'],
      ['run', 'p', 'ok'],
    ]);
    expect((await handle.query(statusQuery)).retries).toEqual([]);
    // The rule's patch marker, recorded where it was first asked (RERUN_ANSWERED_STEP_PATCH).
    expect(await markers(handle)).toBe(1);
  });

  test.concurrent('no answer recorded: the saga compensates for the failure, as without the hook', async () => {
    const handle = await start({ steps: [local('a'), local('b', { failWith: 'transient' }), { name: 'p', kind: 'pivot' }], stepAnswered: false });
    expect(await handle.result()).toMatchObject({ status: 'compensated', failure: { type: ScriptedFailureType.transient }, completedSteps: ['a'] });
    expect(calls(await journal(handle))).toEqual([
      ['run', 'a', 'ok'],
      ['run', 'b', 'failed'],
      ['record', 'b', 'ok'],
      ['undo', 'b', 'ok'],
      ['undo', 'a', 'ok'],
    ]);
  });

  test.concurrent.each([
    ['a business failure (non-retryable) of a local step', local('b', { failWith: 'business' }), ScriptedFailureType.business],
    ['a retryable failure of a step that is not local', comp('b', { failWith: 'transient' }), ScriptedFailureType.transient],
  ])('%s decides at once: never asked, compensated', async (_what, b, type) => {
    const handle = await start({ steps: [local('a'), b, { name: 'p', kind: 'pivot' }], stepAnswered: true });
    expect(await handle.result()).toMatchObject({ status: 'compensated', failure: { type }, completedSteps: ['a'] });
    expect(calls(await journal(handle))).toEqual([
      ['run', 'a', 'ok'],
      ['run', 'b', 'failed'],
      ['undo', 'b', 'ok'],
      ['undo', 'a', 'ok'],
    ]);
    expect(await markers(handle)).toBe(0);
  });

  test.concurrent("a cancel met at a local step whose abandon fails on the way: it is asked again until it answers, and the step's undo runs", async () => {
    const { cancel, outcome, rows } = await cancelledBeforeFirstTask({ steps: [local('a', { abandon: { failsTimes: 2, answer: true } }), comp('b')] });
    expect(cancel).toBe('accepted');
    expect(outcome).toMatchObject({ status: 'cancelled', completedSteps: [], compensations: [{ step: 'a', status: 'done' }] });
    expect(calls(rows)).toEqual([
      ['record', 'a', 'failed'],
      ['record', 'a', 'failed'],
      ['record', 'a', 'ok'],
      ['undo', 'a', 'ok'],
    ]);
  });
});

describe('a tombstone an earlier task of this saga left (it compensated, then was lost)', () => {
  const outOfStock = { cancelled: false, failure: { type: 'OutOfStock', message: 'out of stock: sku-1' } };
  const changedMind = { cancelled: true, failure: { type: 'SagaCancelled', message: 'changed my mind' } };

  /** What the lost task's compensation committed: step b tombstoned before it ran, with the saga's cause. */
  async function tombstoneB(workflowId: string, cause: SagaCause): Promise<void> {
    await createLedger(ctx.db).step('b').localUndo(undoKey(workflowId, 'b'), { step: 'b', cause }, async () => undefined);
  }
  const ledgerRows = async (workflowId: string) =>
    (await ctx.db.query(`SELECT step, state, undone, cause FROM step_ledger WHERE workflow_id = $1 AND key NOT LIKE '%/undo' ORDER BY step`, [workflowId])).rows;
  const undos = (rows: JournalRow[]) => rows.filter((r) => r.action === 'undo').map((r) => [r.step, r.outcome, r.detail]);

  test.concurrent('a step that meets it stops the saga, which unwinds for the cause recorded, not for StepCancelled', async () => {
    const workflowId = uniqueId('scripted');
    await tombstoneB(workflowId, outOfStock);
    const handle = await start({ steps: [comp('a', { ledger: true }), comp('b', { ledger: true }), { name: 'p', kind: 'pivot' }] }, workflowId);
    expect(await handle.result()).toEqual({
      status: 'compensated',
      failure: outOfStock.failure,
      completedSteps: [],
      compensations: [{ step: 'a', status: 'done', attempts: 1 }],
    });
    const rows = await journal(handle);
    expect(calls(rows)).toEqual([
      ['run', 'a', 'failed'],
      ['undo', 'a', 'ok'],
    ]);
    expect(undos(rows)).toEqual([['a', 'ok', 'failed:OutOfStock']]);
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'compensated', cancelRequested: false, failure: outOfStock.failure });
    expect(await ledgerRows(workflowId)).toEqual([
      { step: 'a', state: 'cancelled', undone: null, cause: outOfStock },
      { step: 'b', state: 'cancelled', undone: null, cause: outOfStock },
    ]);
  });

  test.concurrent('a recorded cancel: the saga ends cancelled for it, with its reason', async () => {
    const workflowId = uniqueId('scripted');
    await tombstoneB(workflowId, changedMind);
    const handle = await start({ steps: [comp('a', { ledger: true }), comp('b', { ledger: true })] }, workflowId);
    expect(await handle.result()).toEqual({
      status: 'cancelled',
      failure: changedMind.failure,
      completedSteps: [],
      compensations: [{ step: 'a', status: 'done', attempts: 1 }],
    });
    expect(undos(await journal(handle))).toEqual([['a', 'ok', 'cancelled:SagaCancelled']]);
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'cancelled', cancelRequested: true });
  });

  test.concurrent('an ordinary step that meets it (an activity failure around StepCancelled) reads the cause just the same', async () => {
    const workflowId = uniqueId('scripted');
    await tombstoneB(workflowId, outOfStock);
    const handle = await start({ steps: [comp('a'), comp('b', { ledger: true })] }, workflowId);
    expect(await handle.result()).toMatchObject({ status: 'compensated', failure: outOfStock.failure, completedSteps: ['a'] });
    expect(undos(await journal(handle))).toEqual([
      ['b', 'ok', 'failed:OutOfStock'],
      ['a', 'ok', 'failed:OutOfStock'],
    ]);
  });

  test.concurrent.each([
    ['is refused for the failure the earlier task met', outOfStock, 'refused: the saga is already compensating for OutOfStock: out of stock: sku-1', 'compensated', 'failed:OutOfStock'],
    ['stands when the earlier task was cancelled, and the earlier reason is the one kept', changedMind, 'accepted', 'cancelled', 'cancelled:SagaCancelled'],
  ] as const)('a cancel waiting on local steps %s', async (_name, cause, answer, status, undoDetail) => {
    const workflowId = uniqueId('scripted');
    await tombstoneB(workflowId, cause);
    const { cancel, outcome, rows } = await cancelledBeforeFirstTask({ steps: [comp('a', { local: true, ledger: true }), comp('b', { ledger: true })] }, workflowId);
    expect(cancel).toBe(answer);
    expect(outcome).toEqual({ status, failure: cause.failure, completedSteps: [], compensations: [{ step: 'a', status: 'done', attempts: 1 }] });
    expect(undos(rows)).toEqual([['a', 'ok', undoDetail]]);
  });
});

describe('the edges of a cancel', () => {
  test.concurrent('a saga of local steps with no cancel completes: running local steps is no cancel', async () => {
    const handle = await start({ steps: [comp('a', { local: true }), comp('b', { local: true })] });
    expect(await handle.result()).toEqual({ status: 'completed', result: ['a', 'b'], completedSteps: ['a', 'b'], compensations: [] });
  });

  test.concurrent('a cancel that reaches a saga with no step left to stop is refused, and the saga completes', async () => {
    const { cancel, outcome } = await cancelledBeforeFirstTask({ steps: [] });
    expect(cancel).toBe('refused: the saga completed before the cancel could stop it');
    expect(outcome).toEqual({ status: 'completed', result: [], completedSteps: [], compensations: [] });
  });

  test.concurrent('a cancel that comes after the last step, while the workflow code finishes, is refused: nothing is left to stop', async () => {
    const handle = await start({ steps: [comp('a')], holdAtEndMs: 2000 });
    await eventually(() => handle.query(statusQuery), (st) => st.completedSteps.length === 1, 'step a done');
    const answer = await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'late' }] }).then(
      () => 'accepted',
      (e: unknown) => `refused: ${(e as WorkflowUpdateFailedError).cause?.message}`,
    );
    expect(answer).toBe('refused: the saga completed before the cancel could stop it');
    expect(await handle.result()).toEqual({ status: 'completed', result: ['a'], completedSteps: ['a'], compensations: [] });
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'completed', cancelRequested: false });
  });

  test.concurrent('a cancel waiting on a local step that fails is refused for that failure; the saga is not marked as cancel requested', async () => {
    const { cancel, outcome, status } = await cancelledBeforeFirstTask({ steps: [comp('a', { local: true, failWith: 'business' }), comp('b')] });
    expect(cancel).toBe(`refused: the saga is already compensating for ${ScriptedFailureType.business}: a refused (attempt 1)`);
    expect(outcome).toMatchObject({ status: 'compensated', failure: { type: ScriptedFailureType.business } });
    expect(status).toMatchObject({ phase: 'compensated', cancelRequested: false });
  });

  test.concurrent('a second cancel waiting with the first gets the same answer', async () => {
    const { cancels } = await cancelledBeforeFirstTask({ steps: [comp('a', { local: true, failWith: 'business' }), comp('b')] }, undefined, 2);
    expect(cancels).toEqual([0, 1].map(() => `refused: the saga is already compensating for ${ScriptedFailureType.business}: a refused (attempt 1)`));
  });

  test.concurrent('a cancel that comes while only a local step runs, after a step that was not local, waits for it: refused when it fails', async () => {
    // A short workflow task timeout: the worker heartbeats the task that runs the local step, so the
    // update is delivered while that step is still in flight.
    const handle = await ctx.client.workflow.start(scriptedSaga, {
      workflowId: uniqueId('scripted'),
      taskQueue,
      workflowTaskTimeout: '2s',
      args: [{ steps: [comp('x'), comp('a', { local: true, slowMs: 5000, failWith: 'business' }), comp('b')] }],
    });
    await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'a' && r.action === 'run'), 'step a in flight');
    const answer = await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'stop' }] }).then(
      () => 'accepted',
      (e: unknown) => `refused: ${(e as WorkflowUpdateFailedError).cause?.message}`,
    );
    expect(answer).toBe(`refused: the saga is already compensating for ${ScriptedFailureType.business}: a refused (attempt 1)`);
    expect(await handle.result()).toMatchObject({ status: 'compensated', failure: { type: ScriptedFailureType.business } });
  });

  test.concurrent('a cancel that comes while a local step runs, after another local step, waits for it too: refused when it fails', async () => {
    // The first local step ran through no cancel: it leaves nothing counted as in flight behind it,
    // so the cancel that reaches the second still waits for that step's outcome.
    const handle = await ctx.client.workflow.start(scriptedSaga, {
      workflowId: uniqueId('scripted'),
      taskQueue,
      workflowTaskTimeout: '2s',
      args: [{ steps: [comp('x', { local: true }), comp('a', { local: true, slowMs: 5000, failWith: 'business' }), comp('b')] }],
    });
    await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'a' && r.action === 'run'), 'step a in flight');
    const answer = await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'stop' }] }).then(
      () => 'accepted',
      (e: unknown) => `refused: ${(e as WorkflowUpdateFailedError).cause?.message}`,
    );
    expect(answer).toBe(`refused: the saga is already compensating for ${ScriptedFailureType.business}: a refused (attempt 1)`);
    expect(await handle.result()).toMatchObject({ status: 'compensated', failure: { type: ScriptedFailureType.business }, completedSteps: ['x'] });
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'compensated', cancelRequested: false });
  });

  test.concurrent('a step without an undo that a cancel abandons leaves nothing to compensate', async () => {
    const { outcome } = await cancelledBeforeFirstTask({
      steps: [comp('a', { local: true }), { name: 'p', kind: 'pivot', noUndo: true }, { name: 'r', kind: 'retriable' }],
    });
    expect(outcome).toEqual({
      status: 'cancelled',
      failure: { type: 'SagaCancelled', message: 'too early' },
      completedSteps: ['a'],
      compensations: [{ step: 'a', status: 'done', attempts: 1 }],
    });
  });

  test.concurrent('requestCancel called by the workflow itself once the pivot has started is refused, as the update is, and the saga completes', async () => {
    const handle = await start({ steps: [comp('a'), { name: 'p', kind: 'pivot', slowMs: 2000 }, { name: 'r', kind: 'retriable' }] });
    await eventually(() => handle.query(statusQuery), (st) => st.pivotStarted, 'pivotStarted');
    await handle.signal(requestCancelSignal, 'too late');
    expect(await eventually(() => handle.query(requestCancelAnswersQuery), (a) => a.length === 1, 'an answer')).toEqual([
      'past the point of no return: the pivot step has started',
    ]);
    expect(await handle.result()).toMatchObject({ status: 'completed', completedSteps: ['a', 'p', 'r'] });
  });

  test.concurrent('a cancel with an empty reason is cancelled all the same', async () => {
    const handle = await start({ steps: [comp('a', { slowMs: 30_000 })] });
    await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'a' && r.action === 'run'), 'step a in flight');
    expect(await handle.executeUpdate(cancelUpdate, { args: [{ reason: '' }] })).toEqual({ accepted: true });
    expect(await handle.result()).toMatchObject({ status: 'cancelled', failure: { type: 'SagaCancelled', message: 'cancelled' } });
  });

  test.concurrent('a cancel through Temporal (workflow cancel, no update) before the pivot: the step in flight is abandoned and everything undone, as for the update', async () => {
    const handle = await start({ steps: [comp('a'), comp('b', { slowMs: 30_000 }), { name: 'p', kind: 'pivot' }] });
    await eventually(() => journal(handle), (rows) => rows.some((r) => r.step === 'b' && r.action === 'run'), 'step b in flight');
    await handle.cancel();
    expect(await handle.result()).toEqual({
      status: 'cancelled',
      failure: { type: 'SagaCancelled', message: 'cancelled through Temporal (workflow cancel)' },
      completedSteps: ['a'],
      compensations: [
        { step: 'b', status: 'done', attempts: 1 },
        { step: 'a', status: 'done', attempts: 1 },
      ],
    });
    const rows = await journal(handle);
    expect(rows.filter((r) => r.action === 'undo').map((r) => [r.step, r.detail])).toEqual([
      ['b', 'cancelled:SagaCancelled'],
      ['a', 'cancelled:SagaCancelled'],
    ]);
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'cancelled', cancelRequested: true });
  });
});

describe('what the saga reports as it moves', () => {
  test.concurrent('onTransition hears every step start and every phase, in order; the current details say the phase in words', async () => {
    const handle = await start({ steps: [comp('a'), comp('b'), comp('c', { failWith: 'business' })], recordTransitions: true });
    expect(await handle.result()).toMatchObject({ status: 'compensated' });
    expect(await handle.query(transitionsQuery)).toEqual(['running a', 'running b', 'running c', 'compensating', 'compensated']);
    const { currentDetails } = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(currentDetails?.split('\n\n')).toEqual([
      '**Compensated: a step failed for good and the steps before it were undone**',
      `Cause: ${ScriptedFailureType.business}: c refused (attempt 1)`,
      'Done: a, b',
      'Undone: c (done), b (done), a (done)',
    ]);
  });

  test.concurrent('a saga that completes reports it, and its details say so', async () => {
    const handle = await start({ steps: [comp('a'), { name: 'p', kind: 'pivot' }], recordTransitions: true });
    await handle.result();
    expect(await handle.query(transitionsQuery)).toEqual(['running a', 'running p', 'completed']);
    const { currentDetails } = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(currentDetails).toBe('**Completed: every step done**\n\nDone: a, p');
  });

  test.concurrent('a saga that fails past its pivot shows FAILED in its details', async () => {
    const handle = await start({ steps: [comp('a'), { name: 'p', kind: 'pivot' }], throwAtEnd: true });
    await failureOfResult(handle);
    const { currentDetails } = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(currentDetails).toBe('**FAILED: needs an operator**\n\nDone: a, p');
  });
});

describe('failures past the steps', () => {
  test.concurrent('workflow code that fails after the pivot completed fails the workflow: nothing is compensated, nothing reported as compensated', async () => {
    const handle = await start({ steps: [comp('a'), { name: 'p', kind: 'pivot' }, { name: 'r', kind: 'retriable' }], throwAtEnd: true });
    const { err, app } = await failureOfResult(handle);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect([app?.type, app?.message]).toEqual([ScriptedFailureType.body, 'the body failed after its steps']);
    expect(calls(await journal(handle)).filter(([action]) => action === 'undo')).toEqual([]);
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'failed', compensations: [], pivotCompleted: true });
  });

  test.concurrent('a definition error whose compensation also fails for good is reported as CompensationFailed, the saga failed', async () => {
    const handle = await start({ steps: [comp('a', { undoFailsPermanently: true }), { name: 'r', kind: 'retriable' }] });
    const { app } = await failureOfResult(handle);
    expect([app?.type, app?.message]).toEqual(['CompensationFailed', '1 compensation(s) failed: a: undo of a is impossible']);
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'failed' });
  });

  test.concurrent('a definition error leaves the saga failed', async () => {
    const handle = await start({ steps: [comp('a'), { name: 'r', kind: 'retriable' }] });
    expect((await failureOfResult(handle)).app?.type).toBe('SagaDefinition');
    expect(await handle.query(statusQuery)).toMatchObject({ phase: 'failed', compensations: [{ step: 'a', status: 'done', attempts: 1 }] });
  });

  test.concurrent('several compensations failing for good are each named in the failure', async () => {
    const handle = await start({
      steps: [comp('a', { undoFailsPermanently: true }), comp('b', { undoFailsPermanently: true }), comp('c', { failWith: 'business' })],
    });
    const { app } = await failureOfResult(handle);
    expect(app?.message).toBe('2 compensation(s) failed: b: undo of b is impossible; a: undo of a is impossible');
  });
});
