/**
 * The idempotency ledger (src/ledger, `sagaflow/ledger`) as a toolkit on a
 * database of someone else's: a schema of its own made by migrateLedger alone,
 * steps of its own whose effects are rows of a table of its own. Every outcome
 * is read back from those rows and from the ledger's.
 */
import { randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { createLedger, LedgerFailure, type Ledger, type LedgerEntry, type UndoContext } from '../../packages/toolkit/src/ledger/ledger';
import { migrateLedger } from '../../packages/toolkit/src/ledger/schema';
import { fingerprint } from '../../packages/toolkit/src/ledger/fingerprint';
import type { Db, Tx } from '../../src/db/pool';
import { stepKey, undoKey } from '../../packages/toolkit/src/workflow/keys';
import type { SagaCause } from '../../packages/toolkit/src/workflow/failures';
import { createTestSchema, uniqueId } from '../helpers/context';

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
