/**
 * The trip saga's replay gate, written as a user of the toolkit would write
 * theirs: `sagaflow/replay` over the saga's own history folder.
 */
import path from 'node:path';
import { describeOutcome, loadHistories, recordedEnding, replayHistories, type ReplayOutcome } from '@sagaflow/toolkit/replay';
import { TRIP_WORKFLOWS_PATH } from '../../examples/trip-booking';
import { bundleFromSource } from '../../workers/toolkit-source';

const dir = path.resolve(__dirname, '../../examples/trip-booking/histories');
const cases = loadHistories(dir);
const options = { workflowsPath: TRIP_WORKFLOWS_PATH, bundlerOptions: { webpackConfigHook: bundleFromSource } };
let outcomes: Map<string, ReplayOutcome>;

beforeAll(async () => {
  outcomes = new Map((await replayHistories(cases, options)).map((o) => [o.workflowId, o]));
});

const paths = ['cancelled-while-waiting', 'confirmation-timeout', 'confirmed', 'deposit-declined', 'hotel-sold-out', 'refund-retried'];

// v1: every step an activity of its own; v2: the database steps as local activities, undos with the saga's cause.
test.each(['v1', 'v2'])('there is a committed %s history for every path of the trip', (label) => {
  expect(cases.filter((c) => c.entry.file.startsWith(`${label}-`)).map((c) => c.scenario).sort()).toEqual([...paths].sort());
});

test.each(cases.map((c) => [c.entry.file, c] as const))('%s replays and ends as recorded', (_file, c) => {
  const outcome = outcomes.get(c.workflowId);
  if (!outcome) throw new Error(`${c.workflowId} was not replayed`);
  if (!outcome.ok) throw new Error(describeOutcome(outcome));
  expect(outcome.replayed).toEqual(recordedEnding(c.history));
});

test('the gate fails a change that would break trips in flight', async () => {
  const confirmed = cases.find((c) => c.scenario === 'confirmed')!;
  const [outcome] = await replayHistories([confirmed], { ...options, workflowsPath: require.resolve('./fixtures/serial-holds') });
  expect(outcome?.ok).toBe(false);
  expect(outcome?.errorName).toBe('DeterminismViolationError');
});
