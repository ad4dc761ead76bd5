/**
 * The saga helper's pure parts: step keys (packages/toolkit/src/workflow/keys.ts), how it
 * reads failures (packages/toolkit/src/workflow/failures.ts) and what it reports and waits
 * (packages/toolkit/src/workflow/status.ts). The workflow code and the ledger
 * both rely on them, so each rule is pinned here, message included.
 */
import { ApplicationFailure } from '@temporalio/common';
import { assertStepName, InvalidStepKeyError, parseStepKey, sagaKeys, stepKey, undoKey } from '../../packages/toolkit/src/workflow/keys';
import { describeFailure, isNonRetryable, isSagaCause, recordedCause, STEP_CANCELLED } from '../../packages/toolkit/src/workflow/failures';
import { backoffMs, cloneStatus, describeSagaStatus, type SagaStatus } from '../../packages/toolkit/src/workflow/status';

describe('step keys', () => {
  test('forward and undo keys, and both parsed back, with workflow IDs that hold slashes', () => {
    expect(stepKey('order-1', 'charge')).toBe('order-1/charge');
    expect(undoKey('order-1', 'charge')).toBe('order-1/charge/undo');
    const keys = sagaKeys('a/b/undo');
    expect([keys.step('ship'), keys.undo('ship')]).toEqual(['a/b/undo/ship', 'a/b/undo/ship/undo']);
    expect(parseStepKey('a/b/undo/ship')).toEqual({ key: 'a/b/undo/ship', workflowId: 'a/b/undo', step: 'ship', undo: false, forwardKey: 'a/b/undo/ship' });
    expect(parseStepKey('a/b/undo/ship/undo')).toEqual({
      key: 'a/b/undo/ship/undo',
      workflowId: 'a/b/undo',
      step: 'ship',
      undo: true,
      forwardKey: 'a/b/undo/ship',
    });
    expect(parseStepKey('w/s.1_-x')).toMatchObject({ workflowId: 'w', step: 's.1_-x', undo: false });
  });

  test('step names: lower-case letters, digits, - _ . from a letter or digit, at most 63, never "undo"', () => {
    for (const ok of ['a', '0', 'reserve-inventory', 'a.b_c', 'x'.repeat(63)]) expect(() => assertStepName(ok)).not.toThrow();
    for (const bad of ['', 'undo', 'Charge', '-a', '.a', 'a/b', 'a b', 'x'.repeat(64), 'ä']) {
      expect(() => assertStepName(bad)).toThrow(new InvalidStepKeyError(`invalid step name "${bad}": lower-case letters, digits, - _ . (not "undo"), at most 63`));
    }
    expect(() => stepKey('w', 'Bad')).toThrow(InvalidStepKeyError);
    expect(() => stepKey('', 'charge')).toThrow(new InvalidStepKeyError('a step key needs a workflow ID'));
    expect(() => undoKey('', 'charge')).toThrow(InvalidStepKeyError);
  });

  test('anything else is not a step key, and says what one looks like', () => {
    for (const bad of ['charge', '/charge', 'w/', 'w/undo', 'w/Charge', 'w/charge/undo/undo', 'undo', '/', 'w/undo/undo']) {
      expect(() => parseStepKey(bad)).toThrow(
        new InvalidStepKeyError(`"${bad}" is not a step key: expected <workflowId>/<step> or <workflowId>/<step>/undo`),
      );
    }
    const err = (() => {
      try {
        parseStepKey('x');
      } catch (e) {
        return e as Error;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(InvalidStepKeyError);
    expect(err?.name).toBe('InvalidStepKeyError');
  });
});

describe('failures', () => {
  const cause = { cancelled: false, failure: { type: 'CardDeclined', message: 'no funds' } };

  test('isSagaCause: a boolean cancelled and a failure with a string type and message', () => {
    expect(isSagaCause(cause)).toBe(true);
    expect(isSagaCause({ cancelled: true, failure: { type: '', message: '' } })).toBe(true);
    for (const bad of [
      null,
      undefined,
      'cause',
      {},
      { cancelled: 'no', failure: cause.failure },
      { cancelled: false },
      { cancelled: false, failure: null },
      { cancelled: false, failure: 'x' },
      { cancelled: false, failure: { type: 1, message: 'm' } },
      { cancelled: false, failure: { type: 't' } },
    ]) {
      expect([bad, isSagaCause(bad)]).toEqual([bad, false]);
    }
  });

  test('recordedCause: the cause a StepCancelled failure carries, found anywhere in the chain, copied without extras', () => {
    const stepCancelled = ApplicationFailure.create({
      type: STEP_CANCELLED,
      message: 'compensated',
      nonRetryable: true,
      details: [{ sagaCause: { ...cause, extra: 1, failure: { ...cause.failure, stack: 's' } } }],
    });
    expect(recordedCause(stepCancelled)).toEqual(cause);
    expect(recordedCause({ message: 'activity failed', cause: { message: 'wrapped', cause: stepCancelled } })).toEqual(cause);
    // Other types, no details, details without a cause, a chain deeper than ten: none.
    expect(recordedCause(ApplicationFailure.create({ type: 'Other', details: [{ sagaCause: cause }] }))).toBeUndefined();
    expect(recordedCause(ApplicationFailure.create({ type: STEP_CANCELLED }))).toBeUndefined();
    expect(recordedCause({ type: STEP_CANCELLED, details: 'not a list' })).toBeUndefined();
    expect(recordedCause({ type: STEP_CANCELLED, details: [] })).toBeUndefined();
    expect(recordedCause({ type: STEP_CANCELLED, details: [{ sagaCause: { cancelled: 1 } }] })).toBeUndefined();
    expect(recordedCause(undefined)).toBeUndefined();
    let deep: object = stepCancelled;
    for (let i = 0; i < 10; i++) deep = { cause: deep };
    expect(recordedCause(deep)).toBeUndefined();
    let nine: object = stepCancelled;
    for (let i = 0; i < 9; i++) nine = { cause: nine };
    expect(recordedCause(nine)).toEqual(cause);
  });

  test('describeFailure: the innermost typed failure’s type, with the last message met on the way down', () => {
    const inner = ApplicationFailure.create({ type: 'OutOfStock', message: 'none left' });
    expect(describeFailure({ message: 'Activity task failed', cause: inner })).toEqual({ type: 'OutOfStock', message: 'none left' });
    // An empty message keeps the outer one; the first typed failure stops the walk.
    expect(describeFailure({ message: 'outer', cause: { type: 'T', message: '', cause: { type: 'Deeper', message: 'deeper' } } })).toEqual({
      type: 'T',
      message: 'outer',
    });
    expect(describeFailure({ type: '', message: 'untyped', cause: { message: 'inner text' } })).toEqual({ type: 'Unknown', message: 'inner text' });
    expect(describeFailure({ type: 7, message: 9 })).toEqual({ type: 'Unknown', message: '[object Object]' });
    expect(describeFailure('just text')).toEqual({ type: 'Unknown', message: 'just text' });
    expect(describeFailure(undefined)).toEqual({ type: 'Unknown', message: 'undefined' });
    let deep: object = { type: 'TooDeep', message: 'deep' };
    for (let i = 0; i < 10; i++) deep = { message: `level ${i}`, cause: deep };
    expect(describeFailure(deep)).toEqual({ type: 'Unknown', message: 'level 0' });
  });

  test('isNonRetryable: any failure in the chain (ten deep at most) that says so', () => {
    expect(isNonRetryable(ApplicationFailure.nonRetryable('no', 'T'))).toBe(true);
    expect(isNonRetryable({ cause: { cause: { nonRetryable: true } } })).toBe(true);
    expect(isNonRetryable(ApplicationFailure.retryable('maybe', 'T'))).toBe(false);
    expect(isNonRetryable({ nonRetryable: 'yes' })).toBe(false);
    expect(isNonRetryable(undefined)).toBe(false);
    let deep: object = { nonRetryable: true };
    for (let i = 0; i < 10; i++) deep = { cause: deep };
    expect(isNonRetryable(deep)).toBe(false);
  });
});

describe('status', () => {
  const base: SagaStatus = {
    phase: 'running',
    currentStep: null,
    completedSteps: [],
    pivotStarted: false,
    pivotCompleted: false,
    cancelRequested: false,
    compensations: [],
    retries: [],
  };

  test('describeSagaStatus: the phase in words, then the cause, the step in flight, what is done, undone and retried', () => {
    expect(describeSagaStatus(base)).toBe('**Running**');
    expect(describeSagaStatus({ ...base, currentStep: 'a, b', completedSteps: ['x', 'y'] })).toBe('**Running**\n\nStep in flight: a, b\n\nDone: x, y');
    expect(
      describeSagaStatus({
        ...base,
        phase: 'failed',
        failure: { type: 'OutOfStock', message: 'none left' },
        completedSteps: ['a'],
        compensations: [
          { step: 'b', status: 'done', attempts: 1 },
          { step: 'a', status: 'failed', attempts: 3, lastError: 'no' },
        ],
        retries: [
          { step: 'r1', attempts: 2 },
          { step: 'r2', attempts: 1 },
        ],
      }),
    ).toBe(
      '**FAILED: needs an operator**\n\nCause: OutOfStock: none left\n\nDone: a\n\nUndone: b (done), a (failed, 3 attempts)\n\nRetrying: r1, r2',
    );
    const words = (['compensating', 'completed', 'compensated', 'cancelled'] as const).map((phase) => describeSagaStatus({ ...base, phase }));
    expect(words).toEqual([
      '**Compensating (undoing its steps)**',
      '**Completed: every step done**',
      '**Compensated: a step failed for good and the steps before it were undone**',
      '**Cancelled on request: the steps done were undone**',
    ]);
  });

  test('cloneStatus: an equal copy sharing nothing with the original', () => {
    const s: SagaStatus = {
      ...base,
      completedSteps: ['a'],
      compensations: [{ step: 'a', status: 'running', attempts: 1 }],
      retries: [{ step: 'r', attempts: 1 }],
      failure: { type: 'T', message: 'm' },
    };
    const c = cloneStatus(s);
    expect(c).toEqual(s);
    c.completedSteps.push('b');
    c.compensations[0]!.attempts = 9;
    c.retries[0]!.attempts = 9;
    c.failure!.message = 'changed';
    expect(s).toEqual({ ...base, completedSteps: ['a'], compensations: [{ step: 'a', status: 'running', attempts: 1 }], retries: [{ step: 'r', attempts: 1 }], failure: { type: 'T', message: 'm' } });
    expect(cloneStatus(base).failure).toBeUndefined();
  });

  test('backoffMs: doubling from the initial wait (1 s by default), capped (60 s by default), even after many rounds', () => {
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(n, 100, 400))).toEqual([100, 200, 400, 400, 400]);
    expect([1, 2, 7, 8].map((n) => backoffMs(n))).toEqual([1000, 2000, 60_000, 60_000]);
    expect(backoffMs(1, 250)).toBe(250);
    expect(backoffMs(3, undefined, 3000)).toBe(3000);
    expect(backoffMs(1_000, 1, Number.MAX_SAFE_INTEGER)).toBe(2 ** 20);
  });
});
