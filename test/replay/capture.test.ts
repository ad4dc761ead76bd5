import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WorkflowHandle, WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { captureHistories } from '../../packages/toolkit/src/replay/capture';
import { historyFileName, loadCases, readManifest, startedRunId, writeManifest, type ManifestEntry } from '../../packages/toolkit/src/replay/fixtures';
import { describeOutcome, replayAll } from '../../packages/toolkit/src/replay/replay';
import { startOrderSaga } from '../../src/orders/start';
import { ORDER_HISTORIES_DIR } from '../../dev/replay-scenarios';
import { ORDER_SAGA_WORKFLOW_TYPE, type OrderSagaWorkflow } from '../../workflows/order/definitions';
import type { OrderInput } from '../../workflows/order/types';
import { createSagaWorker, orderSagaReplayOptions } from '../../workers/worker';
import { createTestContext, orderInput, seedInventory, uniqueId, type TestContext } from '../helpers/context';

/**
 * Capture keeps every run: a saga started again under the same workflow ID gets a
 * file of its own next to the earlier run's, and each manifest entry describes the
 * run whose history it wrote, on the real server.
 */
let ctx: TestContext;
const taskQueue = uniqueId('capture');
/** No worker polls it: a run started there stays running, its first workflow task not yet taken. */
const idleQueue = `${taskQueue}-idle`;
const dirs: string[] = [];
const label = 'runs';

let order: OrderInput;
let workflowId: string;
/** The runs of `workflowId`, oldest first: two closed, then (from the test that starts it) one still running. */
const runs: string[] = [];
let first: WorkflowHandle<OrderSagaWorkflow>;

beforeAll(async () => {
  ctx = await createTestContext('capture');
  ctx.startWorker(await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps }));
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 10 });
  order = orderInput({ items: [{ sku, quantity: 1 }] });
  first = await startOrderSaga(ctx.client, order, taskQueue);
  workflowId = first.workflowId;
  expect((await first.result()).status).toBe('completed');
  runs.push((await first.describe()).runId);
  // The same workflow ID again once the first run has closed, for an order that now conflicts with the recorded one.
  const second = await startAgain({ ...order, customerId: 'someone-else' }, taskQueue);
  expect((await second.result()).status).not.toBe('completed');
  runs.push(second.firstExecutionRunId);
});

afterAll(async () => {
  if (runs.length === 3) await ctx.client.workflow.getHandle(workflowId, runs[2]).terminate('test over');
  await ctx?.close();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function startAgain(input: OrderInput, queue: string): Promise<WorkflowHandleWithFirstExecutionRunId<OrderSagaWorkflow>> {
  return ctx.client.workflow.start<OrderSagaWorkflow>(ORDER_SAGA_WORKFLOW_TYPE, {
    workflowId,
    taskQueue: queue,
    args: [input],
    workflowIdReusePolicy: 'ALLOW_DUPLICATE',
  });
}

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-capture-'));
  dirs.push(dir);
  return dir;
}

/** Captures the runs of the workflow ID into `dir`, waiting for visibility (eventually consistent) to list `count` of them. */
async function capture(dir: string, count: number): Promise<ManifestEntry[]> {
  for (let i = 0; ; i++) {
    const listed = await countRuns();
    if (listed >= count) break;
    if (i > 200) throw new Error(`visibility listed ${listed} runs of ${workflowId}, not ${count}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return captureHistories(ctx.client, { query: `WorkflowId = '${workflowId}'`, dir, label, codeVersion: 'test', scenarioOf: () => 'again' });
}

async function countRuns(): Promise<number> {
  let n = 0;
  for await (const execution of ctx.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) if (execution.workflowId === workflowId) n++;
  return n;
}

const jsonFiles = (dir: string) => fs.readdirSync(dir).filter((f) => f !== 'manifest.json').sort();

test('file names carry the run: safe characters only, short whatever the scenario, the same for the same run', () => {
  expect(historyFileName('v4', 'success', '01a24e70-0705-724d-9524-8c2a5b1b5440')).toBe('v4-success.01a24e70-0705-724d-9524-8c2a5b1b5440.json');
  expect(historyFileName('v4', 'order/a b.c', 'r')).toBe('v4-order_a_b_c.r.json');
  const long = historyFileName('v4', 'x'.repeat(1000), '01a24e70-0705-724d-9524-8c2a5b1b5440');
  expect(long.length).toBeLessThanOrEqual(130);
  expect(long).toBe(historyFileName('v4', 'x'.repeat(1000), '01a24e70-0705-724d-9524-8c2a5b1b5440'));
  expect(historyFileName('v4', 'success', 'run-a')).not.toBe(historyFileName('v4', 'success', 'run-b'));
  expect(() => historyFileName('v4', 'success', '')).toThrow(/run ID/);
});

test('two runs of one workflow ID captured together: two files, two entries, each describing its own run, each replaying to its own ending', async () => {
  const dir = tempDir();
  const written = await capture(dir, 2);
  expect(written.map((e) => e.runId).sort()).toEqual([...runs].sort());
  expect(jsonFiles(dir)).toEqual(runs.map((r) => historyFileName(label, 'again', r)).sort());

  const manifest = readManifest(dir);
  expect(manifest.histories).toHaveLength(2);
  for (const runId of runs) {
    const entry = manifest.histories.find((e) => e.runId === runId)!;
    expect(entry).toMatchObject({ file: historyFileName(label, 'again', runId), workflowId, workflowType: ORDER_SAGA_WORKFLOW_TYPE, scenario: 'again' });
    const described = await ctx.client.workflow.getHandle(workflowId, runId).describe();
    expect(entry.status).toBe(described.status.name);
  }

  const cases = loadCases(dir);
  expect(cases.map((c) => c.runId).sort()).toEqual([...runs].sort());
  for (const c of cases) expect(startedRunId(c.history)).toBe(c.entry.runId);
  const [firstCase, secondCase] = runs.map((r) => cases.find((c) => c.runId === r)!);
  expect(firstCase!.entry.activities).not.toEqual(secondCase!.entry.activities);

  const outcomes = await replayAll(cases, { ...orderSagaReplayOptions(), dataConverter: ctx.dataConverter });
  expect(outcomes.map((o) => o.runId)).toEqual(cases.map((c) => c.runId));
  for (const o of outcomes) {
    if (!o.ok) throw new Error(describeOutcome(o));
    expect(o.endingMatches).toBe(true);
    expect(o.replayed).toEqual(o.recorded);
  }
  // The runs ended differently, and each file holds, and replays to, its own run's ending.
  const ending = (runId: string) => outcomes.find((o) => o.runId === runId)!.recorded;
  expect(ending(runs[0]!)).toMatchObject({ kind: 'completed', result: { status: 'completed' } });
  expect(ending(runs[1]!)).not.toEqual(ending(runs[0]!));
  expect(ending(runs[1]!)).toEqual({ kind: 'completed', result: await ctx.client.workflow.getHandle(workflowId, runs[1]).result() });
});

test('a run still going is captured as running, and the closed runs before it as they closed, not as the latest run is', async () => {
  const third = await startAgain(order, idleQueue);
  runs.push(third.firstExecutionRunId);
  // By workflow ID alone the server describes the latest run: this one.
  expect((await ctx.client.workflow.getHandle(workflowId).describe()).status.name).toBe('RUNNING');

  const dir = tempDir();
  const written = await capture(dir, 3);
  expect(written).toHaveLength(3);
  expect(jsonFiles(dir)).toHaveLength(3);
  const byRun = new Map(readManifest(dir).histories.map((e) => [e.runId, e]));
  expect(byRun.get(runs[0])?.status).toBe('COMPLETED');
  expect(byRun.get(runs[1])?.status).toBe('COMPLETED');
  expect(byRun.get(runs[2])?.status).toBe('RUNNING');
  expect(byRun.get(runs[2])?.activities).toEqual([]);

  const cases = loadCases(dir);
  const outcomes = await replayAll(cases, { ...orderSagaReplayOptions(), dataConverter: ctx.dataConverter });
  outcomes.forEach((o) => {
    if (!o.ok) throw new Error(describeOutcome(o));
  });
  expect(outcomes.find((o) => o.runId === runs[2])?.endingMatches).toBeNull();

  // Captured again into the same folder: every run over its own file, byte for byte, and no entry twice.
  const before = new Map(jsonFiles(dir).map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]));
  const again = await capture(dir, 3);
  expect(again.map((e) => e.file).sort()).toEqual([...before.keys()]);
  expect(jsonFiles(dir)).toEqual([...before.keys()]);
  for (const [f, text] of before) expect(fs.readFileSync(path.join(dir, f), 'utf8')).toBe(text);
  const manifest = readManifest(dir);
  expect(manifest.histories.map((e) => e.file)).toEqual([...before.keys()]);
  expect(manifest.histories.map((e) => e.runId).sort()).toEqual([...runs].sort());
});

test('a folder captured before files named their run: it loads, and capturing its run again rewrites that file instead of adding one', async () => {
  const dir = tempDir();
  await capture(dir, runs.length);
  // Made as the old capture made it: `<label>-<scenario>.json`, an entry without runId.
  const manifest = readManifest(dir);
  const entry = manifest.histories.find((e) => e.runId === runs[0])!;
  const legacy = `${label}-first.json`;
  fs.renameSync(path.join(dir, entry.file), path.join(dir, legacy));
  const legacyEntry: ManifestEntry = { ...entry, file: legacy };
  delete legacyEntry.runId;
  manifest.histories = manifest.histories.filter((e) => e !== entry).concat(legacyEntry);
  writeManifest(manifest, dir);

  const loaded = loadCases(dir).find((c) => c.entry.file === legacy)!;
  expect(loaded.entry.runId).toBeUndefined();
  expect(loaded.runId).toBe(runs[0]);

  await capture(dir, runs.length);
  expect(jsonFiles(dir)).toHaveLength(runs.length);
  expect(jsonFiles(dir)).toContain(legacy);
  const rewritten = readManifest(dir).histories;
  expect(rewritten).toHaveLength(runs.length);
  expect(rewritten.find((e) => e.file === legacy)).toMatchObject({ runId: runs[0], status: 'COMPLETED' });
});

test('the committed histories, named before files carried the run, load with the run each was started as', () => {
  const cases = loadCases(ORDER_HISTORIES_DIR);
  expect(cases.length).toBeGreaterThan(0);
  for (const c of cases) {
    expect(c.runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(c.runId).toBe(c.entry.runId ?? startedRunId(c.history));
  }
});

test('the gate still fails: a captured run that no longer replays is reported failing, naming its run', async () => {
  const dir = tempDir();
  await capture(dir, runs.length);
  const completed = loadCases(dir).find((c) => c.runId === runs[0])!;
  const [outcome] = await replayAll([completed], {
    ...orderSagaReplayOptions(),
    dataConverter: ctx.dataConverter,
    workflowsPath: require.resolve('./fixtures/changed-workflows'),
  });
  expect(outcome?.ok).toBe(false);
  expect(outcome?.errorName).toBe('DeterminismViolationError');
  expect(outcome?.runId).toBe(runs[0]);
  expect(describeOutcome(outcome!)).toContain(workflowId);
});
