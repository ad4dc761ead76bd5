/**
 * The idempotency ledger (src/ledger, `sagaflow/ledger`) as a toolkit on a
 * database of someone else's: a schema of its own made by migrateLedger alone,
 * steps of its own whose effects are rows of a table of its own. Every outcome
 * is read back from those rows and from the ledger's.
 */
import { randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { createLedger, LedgerFailure, type CallOutcome, type ExternalStep, type Ledger, type LedgerEntry, type UndoContext } from '../../packages/toolkit/src/ledger/ledger';
import { migrateLedger } from '../../packages/toolkit/src/ledger/schema';
import { fingerprint } from '../../packages/toolkit/src/ledger/fingerprint';
import type { Db, Tx } from '../../src/db/pool';
import { stepKey, undoKey } from '../../packages/toolkit/src/workflow/keys';
import type { SagaCause } from '../../packages/toolkit/src/workflow/failures';
import { createTestSchema, uniqueId } from '../helpers/context';
import { countingMessages } from '../helpers/pg-messages';

let own: Awaited<ReturnType<typeof createTestSchema>>;
let db: Db;
let ledger: Ledger;
const replays: [string, string][] = [];

beforeAll(async () => {
  own = await createTestSchema('ledger', { migrations: false });
  db = own.db;
  await migrateLedger(db);
  await db.query('CREATE TABLE effects (key text PRIMARY KEY, note text NOT NULL)');
});

// Made anew for each test, inside it: a defect the mutation run plants in createLedger is active only
// in code that runs while a test runs, not in what a beforeAll built.
beforeEach(() => {
  ledger = createLedger(db, { onReplay: (step, key) => replays.push([step, key]) });
});

afterAll(async () => {
  await own?.drop();
});

/** A local step's effect: one row of `effects` under its key. */
const writeEffect = (key: string, note: string) => async (tx: Tx) => {
  await tx.query('INSERT INTO effects (key, note) VALUES ($1, $2)', [key, note]);
  return { note };
};

async function effects(prefix: string): Promise<{ key: string; note: string }[]> {
  return (await db.query('SELECT key, note FROM effects WHERE key LIKE $1 ORDER BY key', [`${prefix}%`])).rows;
}

/** What a call throws, as a failure to look at. */
async function failureOf(p: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

const declined: SagaCause = { cancelled: false, failure: { type: 'CardDeclined', message: 'insufficient funds' } };

describe('a local step', () => {
  test('its effect and its completed row commit together; a second attempt replays the result and applies nothing', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    const key = stepKey(wf, 'reserve');
    const input = { sku: 'a', qty: 2 };
    expect(await step.local(key, input, writeEffect(wf, 'held'))).toEqual({ note: 'held' });
    let ranAgain = false;
    const again = await step.local(key, { qty: 2, sku: 'a' }, async (tx) => {
      ranAgain = true;
      return writeEffect(`${wf}-again`, 'held twice')(tx);
    });
    expect(again).toEqual({ note: 'held' });
    expect(ranAgain).toBe(true);
    expect(await effects(wf)).toEqual([{ key: wf, note: 'held' }]);
    expect(replays).toContainEqual(['reserve', key]);
    expect(await ledger.read(wf)).toEqual<LedgerEntry[]>([
      {
        key,
        workflowId: wf,
        step: 'reserve',
        fingerprint: fingerprint(input),
        state: 'completed',
        result: { note: 'held' },
        error: null,
        undone: null,
        cause: null,
      },
    ]);
  });

  test('the same key with another input: IdempotencyConflict naming the key, nothing applied', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    const key = stepKey(wf, 'reserve');
    await step.local(key, { qty: 1 }, writeEffect(wf, 'one'));
    const f = await failureOf(step.local(key, { qty: 3 }, writeEffect(`${wf}-3`, 'three')));
    expect(f.type).toBe(LedgerFailure.IdempotencyConflict);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toBe(`idempotency key ${key} was used with a different input`);
    expect(await effects(wf)).toEqual([{ key: wf, note: 'one' }]);
  });

  test('a business failure rolls the effect back, is recorded with its details, and every later attempt gets it again', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    const key = stepKey(wf, 'reserve');
    const refuse = async (tx: Tx) => {
      await writeEffect(wf, 'half')(tx);
      throw ApplicationFailure.nonRetryable('out of stock', 'OutOfStock', { sku: 'a', left: 0 });
    };
    const first = await failureOf(step.local(key, { sku: 'a' }, refuse));
    expect([first.type, first.message, first.details]).toEqual(['OutOfStock', 'out of stock', [{ sku: 'a', left: 0 }]]);
    expect(await effects(wf)).toEqual([]);
    const [row] = await ledger.read(wf);
    expect(row).toMatchObject({ state: 'failed', result: null, error: { type: 'OutOfStock', message: 'out of stock', details: [{ sku: 'a', left: 0 }] } });

    const again = await failureOf(step.local(key, { sku: 'a' }, writeEffect(wf, 'would succeed now')));
    expect([again.type, again.message, again.details, again.nonRetryable]).toEqual(['OutOfStock', 'out of stock', [{ sku: 'a', left: 0 }], true]);
    expect(await effects(wf)).toEqual([]);
  });

  test('a failure a retry may change (retryable, or not a typed failure) is thrown as it is and recorded nowhere', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    const key = stepKey(wf, 'reserve');
    const thrown = [
      new Error('connection reset'),
      ApplicationFailure.retryable('busy', 'Busy'),
      Object.assign(new Error('typed but retryable'), { type: 'Busy', nonRetryable: false }),
      Object.assign(new Error('untyped but final'), { type: 42, nonRetryable: true }),
    ];
    for (const err of thrown) {
      await expect(step.local(key, {}, async () => Promise.reject(err))).rejects.toBe(err);
    }
    expect(await ledger.read(wf)).toEqual([]);
    // The key is still free: the next attempt applies.
    expect(await step.local(key, {}, writeEffect(wf, 'at last'))).toEqual({ note: 'at last' });
  });

  test('a business failure with no message is recorded with an empty one; a typed failure of any class is one', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    const foreign = { type: 'Refused', nonRetryable: true, details: [1, 2] };
    await expect(ledger.step('reserve').local(key, {}, async () => Promise.reject(foreign))).rejects.toBe(foreign);
    expect((await ledger.read(wf))[0]!.error).toEqual({ type: 'Refused', message: '', details: [1, 2] });
    const again = await failureOf(ledger.step('reserve').local(key, {}, writeEffect(wf, 'x')));
    expect([again.type, again.message, again.details, again.nonRetryable]).toEqual(['Refused', '', [1, 2], true]);
  });

  test('data PostgreSQL refuses fails as DataRejected, naming the SQLSTATE: recorded as the step’s failure, its effect rolled back', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    const f = await failureOf(ledger.step('reserve').local(key, {}, writeEffect(wf, 'nul \u0000 byte')));
    expect(f.type).toBe(LedgerFailure.DataRejected);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toMatch(/^PostgreSQL refused the data: .*invalid byte sequence.* \(SQLSTATE 22021\)$/);
    expect((await ledger.read(wf)).map((r) => [r.state, r.error?.type, r.error?.message])).toEqual([['failed', LedgerFailure.DataRejected, f.message]]);
    expect(await effects(wf)).toEqual([]);
  });
});

describe('keys', () => {
  test('a key of another step, the undo key given to a forward operation and the reverse, and a malformed key: InvalidStepKey', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    const cases: [Promise<unknown>, string][] = [
      [step.local(stepKey(wf, 'charge'), {}, writeEffect(wf, 'x')), `key "${wf}/charge" is not a key of <workflowId>/reserve`],
      [step.local(undoKey(wf, 'reserve'), {}, writeEffect(wf, 'x')), `key "${wf}/reserve/undo" is not a key of <workflowId>/reserve`],
      [step.localUndo(stepKey(wf, 'reserve'), {}, async () => 1), `key "${wf}/reserve" is not a key of <workflowId>/reserve/undo`],
      [step.external(undoKey(wf, 'reserve'), {}, { call: async () => ({ ok: true, result: 1 }) }), `key "${wf}/reserve/undo" is not a key of <workflowId>/reserve`],
      [step.externalUndo(stepKey(wf, 'reserve'), {}, { call: async () => 1 }), `key "${wf}/reserve" is not a key of <workflowId>/reserve/undo`],
      [step.local('no-slash', {}, writeEffect(wf, 'x')), '"no-slash" is not a step key: expected <workflowId>/<step> or <workflowId>/<step>/undo'],
    ];
    for (const [call, message] of cases) {
      const f = await failureOf(call);
      expect([f.type, f.message, f.nonRetryable]).toEqual([LedgerFailure.InvalidStepKey, message, true]);
    }
    expect(await ledger.read(wf)).toEqual([]);
    expect(await effects(wf)).toEqual([]);
    expect(() => ledger.step('Not A Step')).toThrow(/invalid step name "Not A Step"/);
  });
});

describe('a local compensation', () => {
  test('is told what the forward step did, tombstones it with the cause, and a late forward attempt replays the answer it had', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    await step.local(stepKey(wf, 'reserve'), { qty: 1 }, writeEffect(wf, 'held'));
    const seen: UndoContext[] = [];
    const undo = async (tx: Tx, ctx: UndoContext) => {
      seen.push(ctx);
      await tx.query('DELETE FROM effects WHERE key = $1', [wf]);
      return { released: true };
    };
    const input = { orderId: 'o1', cause: { ...declined, failure: { ...declined.failure, stack: 'dropped' } } };
    expect(await step.localUndo(undoKey(wf, 'reserve'), input, undo)).toEqual({ released: true });
    // Again with another cause: the same undo (cause is not fingerprinted), replayed.
    expect(await step.localUndo(undoKey(wf, 'reserve'), { orderId: 'o1', cause: { cancelled: true, failure: declined.failure } }, undo)).toEqual({ released: true });
    expect(seen).toEqual([{ key: undoKey(wf, 'reserve'), forwardKey: stepKey(wf, 'reserve'), forward: { state: 'completed', result: { note: 'held' } } }]);
    expect(await effects(wf)).toEqual([]);

    const rows = await ledger.read(wf);
    expect(rows.map((r) => [r.key, r.state, r.undone, r.cause])).toEqual([
      [stepKey(wf, 'reserve'), 'cancelled', 'completed', declined],
      [undoKey(wf, 'reserve'), 'completed', null, null],
    ]);
    expect(rows[1]!.fingerprint).toBe(fingerprint({ orderId: 'o1' }));
    expect(rows[1]!.result).toEqual({ released: true });

    // The lost task's retry: the forward attempt gets the answer the first one got, and applies nothing.
    expect(await step.local(stepKey(wf, 'reserve'), { qty: 1 }, writeEffect(`${wf}-late`, 'late'))).toEqual({ note: 'held' });
    expect(await effects(wf)).toEqual([]);
  });

  test('of a step that never ran: told absent, and the late forward attempt is StepCancelled with the saga’s cause', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    const seen: UndoContext[] = [];
    await step.localUndo(undoKey(wf, 'reserve'), { cause: declined }, async (_tx, ctx) => {
      seen.push(ctx);
      return null;
    });
    expect(seen.map((c) => c.forward)).toEqual([{ state: 'absent' }]);
    const f = await failureOf(step.local(stepKey(wf, 'reserve'), {}, writeEffect(wf, 'late')));
    expect(f.type).toBe(LedgerFailure.StepCancelled);
    expect(f.nonRetryable).toBe(true);
    expect(f.message).toBe(`step ${wf}/reserve was compensated (CardDeclined: insufficient funds); this late attempt applies nothing`);
    expect(f.details).toEqual([{ sagaCause: declined }]);
    expect(await effects(wf)).toEqual([]);
  });

  test('a forward step of a saga that has started compensating never applies: StepCancelled with the cause, or none given', async () => {
    const wf = uniqueId('wf');
    await ledger.step('reserve').localUndo(undoKey(wf, 'reserve'), { cause: { cancelled: true, failure: { type: 'SagaCancelled', message: 'by request' } } }, async () => null);
    // Another step, never run, of the same saga.
    const f = await failureOf(ledger.step('charge').local(stepKey(wf, 'charge'), {}, writeEffect(wf, 'late')));
    expect(f.type).toBe(LedgerFailure.StepCancelled);
    expect(f.message).toBe(`step ${wf}/charge was compensated (cancelled); this late attempt applies nothing`);
    expect(f.details).toEqual([{ sagaCause: { cancelled: true, failure: { type: 'SagaCancelled', message: 'by request' } } }]);
    let called = false;
    const g = await failureOf(
      ledger.step('ship').external(stepKey(wf, 'ship'), {}, {
        call: async () => {
          called = true;
          return { ok: true, result: 1 };
        },
      }),
    );
    expect(g.type).toBe(LedgerFailure.StepCancelled);
    expect(called).toBe(false);
    expect(await effects(wf)).toEqual([]);

    const bare = uniqueId('wf');
    await ledger.step('reserve').localUndo(undoKey(bare, 'reserve'), 'no cause here', async () => null);
    const h = await failureOf(ledger.step('charge').local(stepKey(bare, 'charge'), {}, writeEffect(bare, 'late')));
    expect(h.message).toBe(`step ${bare}/charge was compensated; this late attempt applies nothing`);
    expect(h.details).toBeUndefined();
    expect((await ledger.read(bare)).map((r) => [r.key, r.state, r.cause])).toEqual([
      [stepKey(bare, 'reserve'), 'cancelled', null],
      [undoKey(bare, 'reserve'), 'completed', null],
    ]);
  });

  test('of a failed step: told its failure, and the late attempt is answered with that failure', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('reserve');
    await failureOf(step.local(stepKey(wf, 'reserve'), {}, async () => Promise.reject(ApplicationFailure.nonRetryable('none left', 'OutOfStock'))));
    const seen: UndoContext[] = [];
    await step.localUndo(undoKey(wf, 'reserve'), {}, async (_tx, ctx) => {
      seen.push(ctx);
      return null;
    });
    expect(seen.map((c) => c.forward)).toEqual([{ state: 'failed', error: { type: 'OutOfStock', message: 'none left', details: [] } }]);
    const f = await failureOf(step.local(stepKey(wf, 'reserve'), {}, writeEffect(wf, 'late')));
    expect([f.type, f.message]).toEqual(['OutOfStock', 'none left']);
  });

  test('tombstones left before they remembered what they replaced: told cancelled (ran) or absent (never ran)', async () => {
    const wf = uniqueId('wf');
    await db.query(
      `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state) VALUES ($1, $2, 'reserve', 'fp-old', 'cancelled'), ($3, $2, 'charge', NULL, 'cancelled')`,
      [stepKey(wf, 'reserve'), wf, stepKey(wf, 'charge')],
    );
    const told: unknown[] = [];
    for (const name of ['reserve', 'charge']) {
      await ledger.step(name).localUndo(undoKey(wf, name), {}, async (_tx, ctx) => {
        told.push(ctx.forward);
        return null;
      });
    }
    expect(told).toEqual([{ state: 'cancelled' }, { state: 'absent' }]);
    const f = await failureOf(ledger.step('reserve').local(stepKey(wf, 'reserve'), {}, writeEffect(wf, 'late')));
    expect(f.type).toBe(LedgerFailure.StepCancelled);
  });

  test('what identifies an undo is its input without `cause`, whatever shape the input has', async () => {
    const wf = uniqueId('wf');
    const inputs: [string, unknown, unknown][] = [
      ['a', 'plain text', 'plain text'],
      ['b', null, null],
      ['c', [1, { cause: declined }], [1, { cause: declined }]],
      ['d', { orderId: 'o' }, { orderId: 'o' }],
      ['e', { orderId: 'o', cause: declined }, { orderId: 'o' }],
      ['f', { orderId: 'o', cause: 'not a cause' }, { orderId: 'o' }],
    ];
    for (const [name, input] of inputs) await ledger.step(name).localUndo(undoKey(wf, name), input, async () => null);
    const rows = await ledger.read(wf);
    for (const [name, , identity] of inputs) {
      expect([name, rows.find((r) => r.key === undoKey(wf, name))!.fingerprint]).toEqual([name, fingerprint(identity)]);
    }
    expect(rows.filter((r) => r.state === 'cancelled').map((r) => [r.step, r.cause])).toEqual([
      ['a', null],
      ['b', null],
      ['c', null],
      ['d', null],
      ['e', declined],
      ['f', null],
    ]);
  });

  test('the same undo key with another identity: IdempotencyConflict, the undo not run again', async () => {
    const wf = uniqueId('wf');
    let runs = 0;
    const undo = async () => ++runs;
    await ledger.step('reserve').localUndo(undoKey(wf, 'reserve'), { orderId: 'a' }, undo);
    const f = await failureOf(ledger.step('reserve').localUndo(undoKey(wf, 'reserve'), { orderId: 'b' }, undo));
    expect([f.type, f.message]).toEqual([LedgerFailure.IdempotencyConflict, `idempotency key ${wf}/reserve/undo was used with a different input`]);
    expect(runs).toBe(1);
  });
});

describe('a compensation racing its forward step', () => {
  /** Polls pg_stat_activity until a backend of this schema's pool waits on `event` (bounded by rounds, not time). */
  async function untilWaiting(event: string): Promise<void> {
    for (let i = 0; i < 400; i++) {
      const res = await db.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event = $1 AND query LIKE '%step_ledger%'`, [event]);
      if (res.rowCount) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no backend ever waited on ${event}`);
  }

  test('a forward step that commits while the undo is claiming its key is tombstoned and undone, not taken for absent', async () => {
    const wf = uniqueId('wf');
    const lockId = Number.parseInt(randomBytes(3).toString('hex'), 16);
    // Holds the forward step's transaction open after its ledger row is written and before it commits.
    await db.query(`
      CREATE OR REPLACE FUNCTION hold_forward() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.key = '${wf}/reserve' THEN PERFORM pg_advisory_xact_lock(${lockId}); END IF;
        RETURN NEW;
      END $$;
      DROP TRIGGER IF EXISTS hold_forward ON step_ledger;
      CREATE TRIGGER hold_forward AFTER INSERT ON step_ledger FOR EACH ROW EXECUTE FUNCTION hold_forward();`);
    const holder = await db.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [lockId]);
      const step = ledger.step('reserve');
      const forward = step.local(stepKey(wf, 'reserve'), {}, writeEffect(wf, 'held'));
      await untilWaiting('advisory');
      const seen: UndoContext[] = [];
      const undo = step.localUndo(undoKey(wf, 'reserve'), {}, async (tx, ctx) => {
        seen.push(ctx);
        await tx.query('DELETE FROM effects WHERE key = $1', [wf]);
        return null;
      });
      // The undo has found no forward row and now waits on the forward's uncommitted one.
      await untilWaiting('transactionid');
      await holder.query('SELECT pg_advisory_unlock($1)', [lockId]);
      expect(await forward).toEqual({ note: 'held' });
      await undo;
      expect(seen.map((c) => c.forward)).toEqual([{ state: 'completed', result: { note: 'held' } }]);
      expect(await effects(wf)).toEqual([]);
      expect((await ledger.read(wf)).map((r) => [r.key, r.state, r.undone])).toEqual([
        [stepKey(wf, 'reserve'), 'cancelled', 'completed'],
        [undoKey(wf, 'reserve'), 'completed', null],
      ]);
    } finally {
      holder.release();
      await db.query('DROP TRIGGER IF EXISTS hold_forward ON step_ledger');
    }
  });
});

describe('abandon: a cancel met before a step that a lost workflow task may have started', () => {
  const cancelled: SagaCause = { cancelled: true, failure: { type: 'SagaCancelled', message: 'changed my mind' } };
  const call = (result: unknown) => ({ call: async () => ({ ok: true as const, result }) });

  test('a step no attempt claimed: tombstoned with the cause in one write, true, again true, and no attempt applies it after', async () => {
    const wf = uniqueId('wf');
    const step = ledger.step('charge');
    const key = stepKey(wf, 'charge');
    expect(await step.abandon(key, { key, cause: cancelled })).toBe(true);
    expect(await step.abandon(key, { key, cause: declined })).toBe(true);
    // The first cause stays.
    expect((await ledger.read(wf)).map((r) => [r.key, r.state, r.undone, r.cause])).toEqual([[key, 'cancelled', null, cancelled]]);
    let called = false;
    const late = await failureOf(
      step.external(key, { key }, {
        call: async () => {
          called = true;
          return { ok: true, result: 'charged' };
        },
      }),
    );
    expect([late.type, late.details]).toEqual([LedgerFailure.StepCancelled, [{ sagaCause: cancelled }]]);
    expect(called).toBe(false);
    const lateLocal = await failureOf(step.local(key, { key }, writeEffect(wf, 'late')));
    expect(lateLocal.type).toBe(LedgerFailure.StepCancelled);
    expect(await effects(wf)).toEqual([]);
  });

  test.each([
    ['claimed and still pending (its call in flight or lost)', 'pending'],
    ['completed', 'completed'],
  ])('a step an attempt had %s: false, and its row stands', async (_name, state) => {
    const wf = uniqueId('wf');
    const step = ledger.step('charge');
    const key = stepKey(wf, 'charge');
    if (state === 'completed') {
      await step.external(key, { key }, call({ chargeId: 'ch_1' }));
    } else {
      // The attempt dies after its claim committed, before the call answered.
      const died = await failureOf(
        step.external(key, { key }, {
          call: async () => {
            throw ApplicationFailure.retryable('worker died mid-call');
          },
        }),
      );
      expect(died.message).toBe('worker died mid-call');
    }
    const before = await ledger.read(wf);
    expect(before.map((r) => r.state)).toEqual([state]);
    expect(await step.abandon(key, { key, cause: cancelled })).toBe(false);
    expect(await ledger.read(wf)).toEqual(before);
    if (state === 'pending') {
      // The saga runs the step on: the retry calls again under the same key and completes it.
      expect(await step.external(key, { key }, call({ chargeId: 'ch_2' }))).toEqual({ chargeId: 'ch_2' });
    }
  });

  test('a compensating saga: abandoning another of its steps is still true, with that step tombstoned', async () => {
    const wf = uniqueId('wf');
    await ledger.step('reserve').localUndo(undoKey(wf, 'reserve'), { cause: cancelled }, async () => null);
    expect(await ledger.step('ship').abandon(stepKey(wf, 'ship'), { cause: cancelled })).toBe(true);
    expect((await ledger.read(wf)).find((r) => r.key === stepKey(wf, 'ship'))).toMatchObject({ state: 'cancelled', cause: cancelled });
  });
});

describe('a local step planned as one statement: the whole step in one message', () => {
  let messages: ReturnType<typeof countingMessages>;
  beforeAll(() => {
    messages = countingMessages(db);
  });

  /** The effect: a row of `effects`; applied twice, its note would gain a '+'. */
  const note = (key: string, text: string, extra: unknown[] = []) => ({
    statement: {
      text: `INSERT INTO effects (key, note) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET note = effects.note || '+'`,
      values: [key, text, ...extra],
    },
    result: { note: text },
  });

  test('a first attempt: one message, the effect and its record both committed', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    messages.reset();
    expect(await ledger.step('reserve').localStatement(key, { key }, () => note(wf, "it's held"))).toEqual({ note: "it's held" });
    expect(messages.sent()).toBe(1);
    expect(await effects(wf)).toEqual([{ key: wf, note: "it's held" }]);
    expect((await ledger.read(wf)).map((r) => [r.key, r.state, r.result])).toEqual([[key, 'completed', { note: "it's held" }]]);
  });

  test('a duplicate is answered from the record, its effect rolled back with it', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    await ledger.step('reserve').localStatement(key, { key }, () => note(wf, 'held'));
    expect(await ledger.step('reserve').localStatement(key, { key }, () => note(wf, 'held again'))).toEqual({ note: 'held' });
    expect(await effects(wf)).toEqual([{ key: wf, note: 'held' }]);
  });

  test('a business failure thrown by the plan: nothing is sent but its record, and a retry gets the same answer', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    const refuse = () => {
      throw ApplicationFailure.create({ message: 'plan full', type: 'PlanFull', nonRetryable: true });
    };
    messages.reset();
    const first = await failureOf(ledger.step('reserve').localStatement(key, { key }, refuse));
    // The failure's record alone: no BEGIN or ROLLBACK for a transaction that never began.
    expect(messages.sent()).toBe(1);
    const again = await failureOf(ledger.step('reserve').localStatement(key, { key }, () => note(wf, 'late')));
    expect([first.type, again.type, again.message]).toEqual(['PlanFull', 'PlanFull', 'plan full']);
    expect(await effects(wf)).toEqual([]);
  });

  test('a saga that started compensating: StepCancelled, and the effect does not apply', async () => {
    const wf = uniqueId('wf');
    await ledger.step('charge').localUndo(undoKey(wf, 'charge'), { cause: declined }, async () => null);
    const key = stepKey(wf, 'reserve');
    const late = await failureOf(ledger.step('reserve').localStatement(key, { key }, () => note(wf, 'late')));
    expect([late.type, late.details]).toEqual([LedgerFailure.StepCancelled, [{ sagaCause: declined }]]);
    expect(await effects(wf)).toEqual([]);
  });

  test('a statement that cannot be written with its values in (a Buffer) goes with parameters, in the same transaction', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    const planned = note(wf, 'held');
    planned.statement.text = `INSERT INTO effects (key, note) VALUES ($1, $2 || length($3::bytea))`;
    planned.statement.values.push(Buffer.from([0, 1, 2]));
    messages.reset();
    expect(await ledger.step('reserve').localStatement(key, { key }, () => planned)).toEqual({ note: 'held' });
    // BEGIN, the statement with its parameters, the record with COMMIT.
    expect(messages.sent()).toBe(3);
    expect(await effects(wf)).toEqual([{ key: wf, note: 'held3' }]);
  });

  test('text PostgreSQL refuses (a NUL): a non-retryable DataRejected, recorded, and nothing of the effect applied', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'reserve');
    const refused = await failureOf(ledger.step('reserve').localStatement(key, { key }, () => note(wf, 'nul \u0000 here')));
    expect([refused.type, refused.nonRetryable]).toEqual([LedgerFailure.DataRejected, true]);
    expect(await effects(wf)).toEqual([]);
    expect((await ledger.read(wf)).map((r) => r.state)).toEqual(['failed']);
  });
});

describe('an external step: its claim and its settle, one message each', () => {
  let messages: ReturnType<typeof countingMessages>;
  const ok = { ok: true as const, result: { chargeId: 'ch_1' } };

  beforeAll(async () => {
    messages = countingMessages(db);
    await db.query('CREATE TABLE charges (key text PRIMARY KEY, state text NOT NULL, raw bytea)');
  });

  const charges = async (key: string) => (await db.query('SELECT key, state, raw FROM charges WHERE key = $1', [key])).rows;

  /** A charge as payments writes one: its pending row with the claim, its outcome with the settle. */
  function charge(key: string, calls: string[], answer: () => Promise<CallOutcome<unknown>> = async () => ok, raw: Buffer | null = null): ExternalStep<unknown> {
    return {
      prepareStatement: { text: `INSERT INTO charges (key, state, raw) VALUES ($1, 'pending', $2)`, values: [key, raw] },
      call: async () => {
        calls.push(key);
        return answer();
      },
      confirmStatement: (outcome) => ({ text: 'UPDATE charges SET state = $2 WHERE key = $1', values: [key, outcome.ok ? 'captured' : 'declined'] }),
    };
  }

  test('a first attempt: two messages, the pending row sent with the claim, its outcome with the settle', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    messages.reset();
    expect(await ledger.step('charge').external(key, { key }, charge(key, calls))).toEqual({ chargeId: 'ch_1' });
    expect(messages.sent()).toBe(2);
    expect(calls).toEqual([key]);
    expect(await charges(key)).toEqual([{ key, state: 'captured', raw: null }]);
    expect((await ledger.read(wf)).map((r) => [r.key, r.state, r.result])).toEqual([[key, 'completed', { chargeId: 'ch_1' }]]);
  });

  test('a business failure settles in one message too, and a retry replays it without calling', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    const decline = async () => ({ ok: false as const, failure: { type: 'CardDeclined', message: 'insufficient funds' } });
    messages.reset();
    const first = await failureOf(ledger.step('charge').external(key, { key }, charge(key, calls, decline)));
    expect(messages.sent()).toBe(2);
    const again = await failureOf(ledger.step('charge').external(key, { key }, charge(key, calls, decline)));
    expect([first.type, first.nonRetryable, again.type, again.message]).toEqual(['CardDeclined', true, 'CardDeclined', 'insufficient funds']);
    expect(calls).toEqual([key]);
    expect(await charges(key)).toEqual([{ key, state: 'declined', raw: null }]);
  });

  test('a duplicate of a completed step is answered from the record: no call, its prepareStatement not run again', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    await ledger.step('charge').external(key, { key }, charge(key, calls));
    await db.query(`UPDATE charges SET state = 'refunded elsewhere' WHERE key = $1`, [key]);
    expect(await ledger.step('charge').external(key, { key }, charge(key, calls))).toEqual({ chargeId: 'ch_1' });
    expect(calls).toEqual([key]);
    // Neither statement ran again: a second pending INSERT would have failed on the key, a second confirm rewritten the state.
    expect(await charges(key)).toEqual([{ key, state: 'refunded elsewhere', raw: null }]);
  });

  test('a duplicate with another input is a conflict, and nothing of it applies', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    await ledger.step('charge').external(key, { key, amount: 1 }, charge(key, calls));
    const clash = await failureOf(ledger.step('charge').external(key, { key, amount: 2 }, charge(key, calls)));
    expect(clash.type).toBe(LedgerFailure.IdempotencyConflict);
    expect(calls).toEqual([key]);
  });

  test('an attempt that died mid-call left its key pending: the retry calls again, prepares nothing twice, and settles', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    const died = await failureOf(
      ledger.step('charge').external(key, { key }, charge(key, calls, async () => {
        throw ApplicationFailure.retryable('worker died mid-call');
      })),
    );
    expect(died.message).toBe('worker died mid-call');
    expect(await charges(key)).toEqual([{ key, state: 'pending', raw: null }]);
    expect(await ledger.step('charge').external(key, { key }, charge(key, calls))).toEqual({ chargeId: 'ch_1' });
    expect(calls).toEqual([key, key]);
    expect(await charges(key)).toEqual([{ key, state: 'captured', raw: null }]);
    expect((await ledger.read(wf)).map((r) => r.state)).toEqual(['completed']);
  });

  test('a saga that started compensating before the claim: nothing is claimed, prepared or called', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    await ledger.step('reserve').localUndo(undoKey(wf, 'reserve'), { cause: declined }, async () => null);
    const late = await failureOf(ledger.step('charge').external(key, { key }, charge(key, calls)));
    expect([late.type, late.details]).toEqual([LedgerFailure.StepCancelled, [{ sagaCause: declined }]]);
    expect(calls).toEqual([]);
    expect(await charges(key)).toEqual([]);
  });

  test('a key compensated while its call was out: the settle applies no confirmStatement and the step answers StepCancelled', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    const step = ledger.step('charge');
    const late = await failureOf(
      step.external(key, { key }, charge(key, calls, async () => {
        // The compensation tombstones the pending key while the provider is still answering.
        await step.localUndo(undoKey(wf, 'charge'), { cause: declined }, async () => null);
        return ok;
      })),
    );
    expect(late.type).toBe(LedgerFailure.StepCancelled);
    expect(await charges(key)).toEqual([{ key, state: 'pending', raw: null }]);
    expect((await ledger.read(wf)).find((r) => r.key === key)).toMatchObject({ state: 'cancelled', undone: 'pending' });
  });

  test('a prepareStatement PostgreSQL refuses in the one message: DataRejected at once, no second try apart, nothing called', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    // A row of the step's own already there: its pending INSERT breaks the unique key (23505).
    await db.query(`INSERT INTO charges (key, state) VALUES ($1, 'left by hand')`, [key]);
    messages.reset();
    const refused = await failureOf(ledger.step('charge').external(key, { key }, charge(key, calls)));
    expect([refused.type, refused.nonRetryable]).toEqual([LedgerFailure.DataRejected, true]);
    // The message, then its ROLLBACK: the refusal is not taken for a key already claimed.
    expect(messages.sent()).toBe(2);
    expect(calls).toEqual([]);
    expect(await ledger.read(wf)).toEqual([]);
  });

  test('a prepareStatement that cannot be written with its values in (a Buffer) goes with parameters, apart, and the step completes', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    messages.reset();
    expect(await ledger.step('charge').external(key, { key }, charge(key, calls, undefined, Buffer.from([0, 1, 2])))).toEqual({ chargeId: 'ch_1' });
    // BEGIN with the claim, the statement with its parameters, COMMIT; then the settle in one.
    expect(messages.sent()).toBe(4);
    expect(await charges(key)).toEqual([{ key, state: 'captured', raw: Buffer.from([0, 1, 2]) }]);
  });

  test('a confirmStatement PostgreSQL refuses (class 22): a non-retryable DataRejected, and the settle did not apply', async () => {
    const wf = uniqueId('wf');
    const key = stepKey(wf, 'charge');
    const calls: string[] = [];
    const step = charge(key, calls);
    step.confirmStatement = () => ({ text: 'UPDATE charges SET state = $2 WHERE key = $1', values: [key, 'nul \u0000 here'] });
    const refused = await failureOf(ledger.step('charge').external(key, { key }, step));
    expect([refused.type, refused.nonRetryable]).toEqual([LedgerFailure.DataRejected, true]);
    expect(await charges(key)).toEqual([{ key, state: 'pending', raw: null }]);
    expect((await ledger.read(wf)).map((r) => r.state)).toEqual(['pending']);
  });
});

describe('read', () => {
  test('every row of one saga, oldest first, and none of another saga’s', async () => {
    const wf = uniqueId('wf');
    const other = uniqueId('wf');
    for (const name of ['a', 'b', 'c']) await ledger.step(name).local(stepKey(wf, name), {}, async () => name);
    await ledger.step('a').local(stepKey(other, 'a'), {}, async () => 'other');
    expect((await ledger.read(wf)).map((r) => [r.step, r.result])).toEqual([
      ['a', 'a'],
      ['b', 'b'],
      ['c', 'c'],
    ]);
    expect(await ledger.read(uniqueId('none'))).toEqual([]);
  });
});
