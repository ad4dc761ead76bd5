import { loadCases } from '../../packages/toolkit/src/replay/fixtures';
import { describeOutcome, recordedEnding, replayAll, type ReplayOutcome } from '../../packages/toolkit/src/replay/replay';
import { ORDER_HISTORIES_DIR } from '../../dev/replay-scenarios';
import { orderSagaReplayOptions } from '../../workers/worker';

/**
 * The replay gate: every committed history must replay against the current
 * workflow code with its real workflow ID, and end exactly as it ended when it
 * was recorded (result, steps and compensations), so no change can break sagas
 * already in flight.
 */
const cases = loadCases(ORDER_HISTORIES_DIR);
let outcomes: Map<string, ReplayOutcome>;

beforeAll(async () => {
  outcomes = new Map((await replayAll(cases, orderSagaReplayOptions())).map((o) => [o.workflowId, o]));
});

const paths = [
  'success',
  'fail-record-order',
  'fail-reserve-inventory',
  'fail-charge-payment',
  'fail-create-shipment',
  'cancel-before-pivot',
  'cancel-refused-after-pivot',
  'compensation-retried',
  'duplicate-start',
];

test.each([
  // v1: recorded before the fraud check existed; these sagas must keep finishing on the old path.
  ['v1', paths],
  // v2: recorded after it, with the patch marker.
  ['v2', [...paths, 'fail-fraud-check']],
  // v3: activities on per-system task queues, and sagas that publish search attributes.
  ['v3', [...paths, 'fail-fraud-check']],
  // v4: search attributes published on phase changes only; undo keys without forwardKey.
  ['v4', [...paths, 'fail-fraud-check']],
  // v5: the database-only steps as local activities in the workflow's worker.
  ['v5', [...paths, 'fail-fraud-check']],
  // v7: local steps run on through a cancel, to the first step that is not local.
  ['v7', [...paths, 'fail-fraud-check', 'cancel-during-local-step']],
  // v8: a cancel that comes while only local steps run is answered by what it came to; undos carry the saga's cause.
  ['v8', [...paths, 'fail-fraud-check', 'cancel-during-local-step']],
  // v9: a cancel through Temporal (workflow cancel, no update) before the pivot ends the saga cancelled.
  ['v9', [...paths, 'fail-fraud-check', 'cancel-during-local-step', 'temporal-cancel-before-pivot']],
])('there are committed %s histories for every saga path', (label, expected) => {
  const scenarios = cases.filter((c) => c.entry.file.startsWith(`${label}-`)).map((c) => c.scenario);
  expect([...scenarios].sort()).toEqual([...expected].sort());
});

test('v1 sagas never ran the fraud check; v2 sagas that got past the stock did', () => {
  for (const c of cases) {
    const ranFraudCheck = c.entry.activities.includes('checkFraud');
    // The charge ran, or was reached and abandoned by a cancel (only its undo ran).
    const gotPastStock =
      c.entry.activities.includes('chargePayment') || c.entry.activities.includes('refundPayment') || c.scenario === 'fail-fraud-check';
    expect({ file: c.entry.file, ranFraudCheck }).toEqual({ file: c.entry.file, ranFraudCheck: !c.entry.file.startsWith('v1-') && gotPastStock });
  }
});

test.each(cases.map((c) => [`${c.entry.file} (${c.workflowId})`, c] as const))('%s replays and ends as recorded', (_name, c) => {
  const outcome = outcomes.get(c.workflowId);
  if (!outcome) throw new Error(`${c.workflowId} (${c.scenario}) was not replayed`);
  if (!outcome.ok) throw new Error(describeOutcome(outcome));
  expect(outcome.endingMatches).toBe(true);
  expect(outcome.replayed).toEqual(recordedEnding(c.history));
});

test('the gate can fail: an incompatible workflow change is a determinism violation naming the workflow', async () => {
  const success = cases.find((c) => c.scenario === 'success');
  if (!success) throw new Error('no success history committed');
  const [outcome] = await replayAll([success], { ...orderSagaReplayOptions(), workflowsPath: require.resolve('./fixtures/changed-workflows') });
  expect(outcome?.ok).toBe(false);
  expect(outcome?.errorName).toBe('DeterminismViolationError');
  expect(describeOutcome(outcome!)).toContain(success.workflowId);
  expect(describeOutcome(outcome!)).toContain('success');
});

test('the gate checks more than determinism: a history whose recorded result was altered fails', async () => {
  const declined = cases.find((c) => c.scenario === 'fail-charge-payment');
  if (!declined) throw new Error('no declined-card history committed');
  const tampered = structuredClone(declined.history);
  const last = tampered.events![tampered.events!.length - 1]!;
  const payload = last.workflowExecutionCompletedEventAttributes!.result!.payloads![0]!;
  const result = JSON.parse(Buffer.from(payload.data!).toString()) as { compensations: unknown[] };
  result.compensations.reverse();
  payload.data = Buffer.from(JSON.stringify(result));
  const [outcome] = await replayAll([{ ...declined, history: tampered }], orderSagaReplayOptions());
  expect(outcome?.error).toBeUndefined();
  expect(outcome?.endingMatches).toBe(false);
  expect(outcome?.ok).toBe(false);
});
