/**
 * The saga helper's guards and contract on the real Temporal dev server and real PostgreSQL: the
 * key each run and undo is handed, a step name declared twice, a key of another workflow refused
 * by the ledger in a real activity, a value JSON cannot carry refused where workflow code or a
 * client sends it, and the standard status query and cancel update. Outcomes are
 * read from the ledger's rows, the effects' rows and the run's history.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { createGuardActivities, GUARD_DDL } from '../fixtures/saga/guard-activities';
import { handedKeys, keyedSaga, type GuardScript } from '../fixtures/saga/guard-workflows';
import { DISTINCT_STEP_NAMES_PATCH, SagaFailure, sagaCancelUpdate, sagaStatusQuery, stepKey, undoKey } from '../../packages/toolkit/src/workflow';
import { LedgerFailure } from '../../packages/toolkit/src/ledger/ledger';
import { strictPayloadConverterPath, UnrepresentableValueError } from '../../packages/toolkit/src/converter';
import { createTestContext, uniqueId, type TestContext } from '../helpers/context';
import { until } from '../helpers/until';

let ctx: TestContext;
const taskQueue = uniqueId('saga-guards');

beforeAll(async () => {
  ctx = await createTestContext('saga_guards');
  await ctx.db.query(GUARD_DDL);
  // The service's data converter and its bundles carry the strict payload converter.
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('../fixtures/saga/guard-workflows'),
    payloadConverterPath: strictPayloadConverterPath,
  });
  const worker = await Worker.create({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue,
    workflowBundle,
    activities: createGuardActivities(ctx.db),
    dataConverter: ctx.dataConverter,
  });
  ctx.startWorker(worker);
});

afterAll(async () => {
  await ctx?.close();
});

function start(script: GuardScript): Promise<WorkflowHandle<typeof keyedSaga>> {
  return ctx.client.workflow.start(keyedSaga, { workflowId: uniqueId('keyed'), taskQueue, args: [script] });
}

async function ledgerRows(workflowId: string): Promise<[string, string][]> {
  const res = await ctx.db.query<{ key: string; state: string }>('SELECT key, state FROM step_ledger WHERE workflow_id = $1 ORDER BY key', [workflowId]);
  return res.rows.map((r) => [r.key, r.state]);
}

async function effects(workflowId: string): Promise<{ key: string; cause: unknown }[]> {
  return (await ctx.db.query('SELECT key, cause FROM guard_effects WHERE key LIKE $1 ORDER BY key', [`${workflowId}/%`])).rows;
}

async function markers(handle: WorkflowHandle): Promise<string[]> {
  const { events } = await handle.fetchHistory();
  return (events ?? []).flatMap((e) => {
    const m = e.markerRecordedEventAttributes;
    const data = m?.markerName === 'core_patch' ? m.details?.['patch-data']?.payloads?.[0]?.data : undefined;
    if (!data) return [];
    const text = typeof data === 'string' ? Buffer.from(data, 'base64').toString() : Buffer.from(data).toString();
    return [(JSON.parse(text) as { id: string }).id];
  });
}

test('each run is handed its step key and each undo its undo key: the ledger rows are under them', async () => {
  const handle = await start({ steps: ['alpha', 'beta'], holdMs: 60_000 });
  const wf = handle.workflowId;
  await until(() => handle.query(sagaStatusQuery), (s) => s.completedSteps.length === 2, 'both steps completed');
  expect(await handle.executeUpdate(sagaCancelUpdate, { args: [{ reason: 'changed my mind' }] })).toEqual({ accepted: true });
  const outcome = await handle.result();
  expect(outcome).toMatchObject({ status: 'cancelled', completedSteps: ['alpha', 'beta'] });
  expect(await ledgerRows(wf)).toEqual([
    [stepKey(wf, 'alpha'), 'cancelled'],
    [undoKey(wf, 'alpha'), 'completed'],
    [stepKey(wf, 'beta'), 'cancelled'],
    [undoKey(wf, 'beta'), 'completed'],
  ]);
  const cause = { cancelled: true, failure: { type: SagaFailure.SagaCancelled, message: 'changed my mind' } };
  // The undo passed its whole context on as the cause: its key did not travel with it.
  expect(await effects(wf)).toEqual([
    { key: stepKey(wf, 'alpha'), cause: null },
    { key: undoKey(wf, 'alpha'), cause },
    { key: stepKey(wf, 'beta'), cause: null },
    { key: undoKey(wf, 'beta'), cause },
  ]);
  expect(await handle.query(sagaStatusQuery)).toMatchObject({ phase: 'cancelled' });
});

test('the keys handed out are the ones sagaKeys() builds from the workflow ID', async () => {
  const out = await ctx.client.workflow.execute(handedKeys, { workflowId: uniqueId('handed'), taskQueue, args: [['one', 'two']] });
  expect(out.handed).toEqual(out.built);
});

test('a step name declared twice fails the saga as SagaDefinition, after undoing the first one; the patch is recorded', async () => {
  const handle = await start({ steps: ['alpha', 'beta', 'alpha'] });
  const wf = handle.workflowId;
  const err = await handle.result().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(String((err as { cause?: { message?: string } }).cause?.message)).toBe(
    'step alpha is declared twice in this saga: each step needs a name of its own (the name makes its idempotency key)',
  );
  expect((err as { cause?: { type?: string } }).cause?.type).toBe(SagaFailure.SagaDefinition);
  // The repeated step never ran; both earlier steps were undone.
  expect(await ledgerRows(wf)).toEqual([
    [stepKey(wf, 'alpha'), 'cancelled'],
    [undoKey(wf, 'alpha'), 'completed'],
    [stepKey(wf, 'beta'), 'cancelled'],
    [undoKey(wf, 'beta'), 'completed'],
  ]);
  expect(await markers(handle)).toEqual([DISTINCT_STEP_NAMES_PATCH]);
});

test('no saga whose names are distinct records the patch', async () => {
  const handle = await start({ steps: ['alpha', 'beta'] });
  await handle.result();
  expect(await markers(handle)).toEqual([]);
});

test("a key built from another ID than the running workflow's is refused by the ledger: nothing applied, the saga compensates", async () => {
  const handle = await start({ steps: ['alpha', 'beta'], foreignKeyFor: 'beta' });
  const wf = handle.workflowId;
  const outcome = await handle.result();
  expect(outcome).toMatchObject({ status: 'compensated', failure: { type: LedgerFailure.ForeignWorkflowKey }, completedSteps: ['alpha'] });
  expect(await ledgerRows(`other-${wf}`)).toEqual([]);
  expect(await effects(`other-${wf}`)).toEqual([]);
  expect(await ledgerRows(wf)).toEqual([
    [stepKey(wf, 'alpha'), 'cancelled'],
    [undoKey(wf, 'alpha'), 'completed'],
    // beta's undo tombstones its own key, which the refused attempt never wrote.
    [stepKey(wf, 'beta'), 'cancelled'],
    [undoKey(wf, 'beta'), 'completed'],
  ]);
});

test('a Map in an activity input sent from workflow code is refused by path before it is sent: nothing applied, the saga compensates', async () => {
  expect(ctx.dataConverter.payloadConverterPath).toBe(strictPayloadConverterPath);
  const handle = await start({ steps: ['alpha', 'beta'], mapInputFor: 'beta' });
  const wf = handle.workflowId;
  const outcome = await handle.result();
  // Temporal's default converter would have sent the Map as {} and beta would have applied.
  expect(outcome).toMatchObject({
    status: 'compensated',
    failure: { type: 'UnrepresentableValue', message: 'payload.meta: a Map cannot be carried as JSON' },
    completedSteps: ['alpha'],
  });
  expect(await ledgerRows(wf)).toEqual([
    [stepKey(wf, 'alpha'), 'cancelled'],
    [undoKey(wf, 'alpha'), 'completed'],
    [stepKey(wf, 'beta'), 'cancelled'],
    [undoKey(wf, 'beta'), 'completed'],
  ]);
  expect((await effects(wf)).map((e) => e.key)).toEqual([stepKey(wf, 'alpha'), undoKey(wf, 'alpha'), undoKey(wf, 'beta')]);
  // No activity task for beta was ever scheduled.
  const { events } = await handle.fetchHistory();
  const scheduled = (events ?? []).flatMap((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    return a ? [a.activityType?.name] : [];
  });
  expect(scheduled).toEqual(['keyedStep', 'keyedUndo', 'keyedUndo']);
});

test('a client starting a saga with a Set in its input is refused by path, and no workflow is started', async () => {
  const workflowId = uniqueId('set-input');
  const script = { steps: new Set(['alpha']) } as unknown as GuardScript;
  const err = await ctx.client.workflow.start(keyedSaga, { workflowId, taskQueue, args: [script] }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UnrepresentableValueError);
  expect((err as Error).message).toBe('payload.steps: a Set cannot be carried as JSON');
  await expect(ctx.client.workflow.getHandle(workflowId).describe()).rejects.toThrow(/not found/i);
  expect(await ledgerRows(workflowId)).toEqual([]);
});
