/**
 * The ledger's guards against misuse (src/ledger): inside an activity, a key of another
 * workflow is refused; an input JSON cannot carry is refused; another activity under the same
 * key and input is a conflict, while rows written before that rule still answer. Each refusal is
 * checked in the rows: nothing applied, nothing recorded.
 */
import { createHash, randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createLedger, LedgerFailure, type Ledger } from '../../packages/toolkit/src/ledger/ledger';
import { migrateLedger } from '../../packages/toolkit/src/ledger/schema';
import { canonicalJson, fingerprint } from '../../packages/toolkit/src/ledger/fingerprint';
import type { Db, Tx } from '../../src/db/pool';
import { stepKey, undoKey } from '../../packages/toolkit/src/workflow/keys';
import { createTestSchema, uniqueId } from '../helpers/context';

let own: Awaited<ReturnType<typeof createTestSchema>>;
let db: Db;
let ledger: Ledger;

beforeAll(async () => {
  own = await createTestSchema('ledger_guards', { migrations: false });
  db = own.db;
  await migrateLedger(db);
  await db.query('CREATE TABLE effects (key text PRIMARY KEY, note text NOT NULL)');
});

beforeEach(() => {
  ledger = createLedger(db);
});

afterAll(async () => {
  await own?.drop();
});

const logger = new DefaultLogger('ERROR');

/** Runs fn inside an activity context: the activity `activityType` of the workflow `workflowId`. */
function inActivity<T>(workflowId: string, activityType: string, fn: () => Promise<T>): Promise<T> {
  const env = new MockActivityEnvironment({ workflowExecution: { workflowId, runId: randomUUID() }, activityType }, { logger });
  return env.run(fn);
}

const writeEffect = (key: string, note: string) => async (tx: Tx) => {
  await tx.query('INSERT INTO effects (key, note) VALUES ($1, $2)', [key, note]);
  return { note };
};

async function effects(prefix: string): Promise<{ key: string; note: string }[]> {
  return (await db.query('SELECT key, note FROM effects WHERE key LIKE $1 ORDER BY key', [`${prefix}%`])).rows;
}

async function rows(workflowId: string): Promise<{ key: string; state: string; fingerprint: string | null }[]> {
  return (await db.query('SELECT key, state, fingerprint FROM step_ledger WHERE workflow_id = $1 ORDER BY key', [workflowId])).rows;
}

async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('a key of another workflow', () => {
  test('is refused inside an activity, by every operation, before anything is applied or recorded', async () => {
    const mine = uniqueId('wf');
    const other = uniqueId('wf');
    const step = ledger.step('reserve');
    let called = 0;
    const attempts: [string, () => Promise<unknown>][] = [
      ['local', () => step.local(stepKey(other, 'reserve'), { sku: 'a' }, writeEffect(other, 'held'))],
      ['localUndo', () => step.localUndo(undoKey(other, 'reserve'), { sku: 'a' }, writeEffect(`${other}-undo`, 'released'))],
      ['external', () => step.external(stepKey(other, 'reserve'), { sku: 'a' }, { call: async () => ({ ok: true, result: ++called }) })],
      ['externalUndo', () => step.externalUndo(undoKey(other, 'reserve'), { sku: 'a' }, { call: async () => ++called })],
    ];
    for (const [op, attempt] of attempts) {
      const f = await failureOf(inActivity(mine, 'reserveStock', attempt));
      expect([op, f.type, f.nonRetryable]).toEqual([op, LedgerFailure.ForeignWorkflowKey, true]);
      expect(f.message).toBe(
        `key "${op.endsWith('Undo') ? undoKey(other, 'reserve') : stepKey(other, 'reserve')}" belongs to workflow "${other}", ` +
          `but this activity runs for workflow "${mine}": build step keys from the running workflow's ID (sagaKeys(workflowInfo().workflowId))`,
      );
    }
    expect(called).toBe(0);
    expect(await effects(other)).toEqual([]);
    expect(await rows(other)).toEqual([]);
  });

  test("the running workflow's own key is taken; outside an activity no check is made", async () => {
    const mine = uniqueId('wf');
    const step = ledger.step('reserve');
    await inActivity(mine, 'reserveStock', () => step.local(stepKey(mine, 'reserve'), { sku: 'a' }, writeEffect(mine, 'held')));
    // A script or a test calling the ledger directly.
    const scripted = uniqueId('wf');
    await step.local(stepKey(scripted, 'reserve'), { sku: 'a' }, writeEffect(scripted, 'held'));
    for (const wf of [mine, scripted]) {
      expect(await effects(wf)).toEqual([{ key: wf, note: 'held' }]);
      expect((await rows(wf)).map((r) => r.state)).toEqual(['completed']);
    }
  });

  test("a test's default activity context (workflow 'test', the nil run ID) is checked like any other: no exemption", async () => {
    const mocked = uniqueId('wf');
    const err = await failureOf(
      new MockActivityEnvironment(undefined, { logger }).run(() =>
        ledger.step('reserve').local(stepKey(mocked, 'reserve'), { sku: 'a' }, writeEffect(mocked, 'held')),
      ),
    );
    expect(err.type).toBe(LedgerFailure.ForeignWorkflowKey);
    expect(await effects(mocked)).toEqual([]);
    expect(await rows(mocked)).toEqual([]);
  });
});

describe('an input JSON cannot carry', () => {
  test('is refused, non-retryably and by path, before the effect runs, the call is made or a row is written', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    let effectRan = false;
    let called = false;
    const input = { sku: 'a', items: [{}, {}, { meta: new Map([['gift', true]]) }] };
    const attempts: [string, string, () => Promise<unknown>][] = [
      [
        'local',
        stepKey(wf, 'reserve'),
        () =>
          step.local(stepKey(wf, 'reserve'), input, async () => {
            effectRan = true;
          }),
      ],
      [
        'external',
        stepKey(wf, 'reserve'),
        () =>
          step.external(stepKey(wf, 'reserve'), input, {
            call: async () => {
              called = true;
              return { ok: true, result: 1 };
            },
          }),
      ],
      // The undo's identity is fingerprinted: it is checked too.
      [
        'localUndo',
        undoKey(wf, 'reserve'),
        () =>
          step.localUndo(undoKey(wf, 'reserve'), input, async () => {
            effectRan = true;
          }),
      ],
      [
        'externalUndo',
        undoKey(wf, 'reserve'),
        () =>
          step.externalUndo(undoKey(wf, 'reserve'), input, {
            call: async () => {
              called = true;
            },
          }),
      ],
    ];
    for (const [op, key, attempt] of attempts) {
      for (const run of [attempt, () => inActivity(wf, 'reserveStock', attempt)]) {
        const f = await failureOf(run());
        expect([op, f.type, f.nonRetryable, f.message]).toEqual([
          op,
          LedgerFailure.UnrepresentableInput,
          true,
          `step ${key}: input.items[2].meta: a Map cannot be carried as JSON`,
        ]);
      }
    }
    expect([effectRan, called]).toEqual([false, false]);
    // No row, and no tombstone: the forward step can still run.
    expect(await rows(wf)).toEqual([]);
    expect(await step.local(stepKey(wf, 'reserve'), { sku: 'a' }, writeEffect(wf, 'held'))).toEqual({ note: 'held' });
  });
});

describe('another activity under the same key and input', () => {
  test("is a conflict, not the first one's answer; the first activity's retry still replays", async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    const step = ledger.step('reserve');
    const input = { sku: 'a', qty: 1 };
    await inActivity(wf, 'reserveStock', () => step.local(key, input, writeEffect(wf, 'held')));
    const f = await failureOf(inActivity(wf, 'holdGift', () => step.local(key, input, writeEffect(`${wf}-gift`, 'gift'))));
    expect([f.type, f.nonRetryable, f.message]).toEqual([
      LedgerFailure.IdempotencyConflict,
      true,
      `idempotency key ${key} was used with a different input`,
    ]);
    expect(await inActivity(wf, 'reserveStock', () => step.local(key, { qty: 1, sku: 'a' }, writeEffect(`${wf}-again`, 'again')))).toEqual({
      note: 'held',
    });
    expect(await effects(wf)).toEqual([{ key: wf, note: 'held' }]);
    // The stored fingerprint hashes the activity's type with the input.
    expect(await rows(wf)).toEqual([{ key, state: 'completed', fingerprint: sha256(`activity reserveStock\n${canonicalJson(input)}`) }]);
  });

  test('the same for an external step: the second activity makes no call', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const step = ledger.step('charge');
    const calls: string[] = [];
    const charge = (who: string) => () =>
      step.external(key, { amount: 5 }, {
        call: async () => {
          calls.push(who);
          return { ok: true, result: { chargeId: who } };
        },
      });
    expect(await inActivity(wf, 'chargeCard', charge('card'))).toEqual({ chargeId: 'card' });
    expect((await failureOf(inActivity(wf, 'chargeVoucher', charge('voucher')))).type).toBe(LedgerFailure.IdempotencyConflict);
    expect(await inActivity(wf, 'chargeCard', charge('card again'))).toEqual({ chargeId: 'card' });
    expect(calls).toEqual(['card']);
  });

  test('rows fingerprinted from the input alone (before this rule, or outside an activity) still answer every activity', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    const step = ledger.step('reserve');
    const input = { sku: 'a', qty: 1 };
    // A row as the ledger wrote it before the activity's type was hashed with the input.
    await db.query(
      `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state, result) VALUES ($1, $2, 'reserve', $3, 'completed', $4)`,
      [key, wf, fingerprint(input), JSON.stringify({ note: 'held before' })],
    );
    expect(await inActivity(wf, 'reserveStock', () => step.local(key, input, writeEffect(wf, 'again')))).toEqual({ note: 'held before' });
    // Another input is still a conflict.
    expect((await failureOf(inActivity(wf, 'reserveStock', () => step.local(key, { ...input, qty: 2 }, writeEffect(wf, 'x'))))).type).toBe(
      LedgerFailure.IdempotencyConflict,
    );
    expect(await effects(wf)).toEqual([]);

    // An external step left pending by an attempt before the deploy: the retry calls and settles it.
    const ext = ledger.step('charge');
    const extKey = stepKey(wf, 'charge');
    await db.query(
      `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state, input) VALUES ($1, $2, 'charge', $3, 'pending', $4)`,
      [extKey, wf, fingerprint({ amount: 5 }), JSON.stringify({ amount: 5 })],
    );
    const settled = await inActivity(wf, 'chargeCard', () =>
      ext.external(extKey, { amount: 5 }, { call: async () => ({ ok: true, result: { chargeId: 'c1' } }) }),
    );
    expect(settled).toEqual({ chargeId: 'c1' });
    expect((await rows(wf)).map((r) => [r.key, r.state, r.fingerprint])).toEqual([
      [extKey, 'completed', fingerprint({ amount: 5 })],
      [key, 'completed', fingerprint(input)],
    ]);
  });
});
