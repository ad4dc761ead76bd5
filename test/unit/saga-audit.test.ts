import { checkSagaAgainstLedger, type LedgerRowForAudit, type SagaAccount } from '../../dev/chaos/saga-audit';

const wf = 'order-ord_1';
const fraud = { type: 'FraudSuspected', message: 'fraud suspected (score 100): payment method reported as stolen' };
const row = (step: string, state: string, extra: Partial<LedgerRowForAudit> = {}): LedgerRowForAudit => ({
  key: `${wf}/${step}`,
  step,
  state,
  undone: null,
  error: null,
  ...extra,
});
const undoRow = (step: string): LedgerRowForAudit => ({ ...row(step, 'completed'), key: `${wf}/${step}/undo` });

/** A fraud-suspected saga as the ledger records it: two steps done then undone, the check failed then tombstoned. */
const ledger: LedgerRowForAudit[] = [
  row('record-order', 'cancelled', { undone: 'completed' }),
  row('reserve-inventory', 'cancelled', { undone: 'completed' }),
  row('fraud-check', 'cancelled', { undone: 'failed', error: fraud }),
  undoRow('fraud-check'),
  undoRow('reserve-inventory'),
  undoRow('record-order'),
];
const account: SagaAccount = {
  status: 'compensated',
  failure: fraud,
  completedSteps: ['record-order', 'reserve-inventory'],
  compensations: ['fraud-check', 'reserve-inventory', 'record-order'].map((step) => ({ step, status: 'done' })),
};
const order = { id: 'ord_1', status: 'failed', failure_reason: `FraudSuspected: ${fraud.message}` };

describe('a saga checked against its ledger', () => {
  test('an account that matches its rows has no problem', () => {
    expect(checkSagaAgainstLedger(order, account, ledger)).toEqual([]);
  });

  test('an order that records another reason than the first failure is caught (a retried task that failed anew)', () => {
    const late = { ...order, failure_reason: 'StepCancelled: step order-ord_1/reserve-inventory was compensated' };
    expect(checkSagaAgainstLedger(late, account, ledger)).toEqual([
      expect.stringContaining(`the order's reason is "StepCancelled`),
    ]);
    const result = { ...account, failure: { type: 'StepCancelled', message: 'x' } };
    expect(checkSagaAgainstLedger(order, result, ledger)).toEqual([
      expect.stringContaining('the saga compensated for StepCancelled, but the first failure recorded is FraudSuspected'),
    ]);
  });

  test('a saga that stopped waiting for a step (its last attempt timed out, its answer lost) may say so; its order must still give the recorded reason', () => {
    const timedOut = { ...account, failure: { type: 'Unknown', message: 'activity Heartbeat timeout' } };
    expect(checkSagaAgainstLedger(order, timedOut, ledger)).toEqual([]);
    const unreachable = { ...account, failure: { type: 'ProviderUnavailable', message: 'charges unreachable' } };
    expect(checkSagaAgainstLedger(order, unreachable, ledger)).toEqual([]);
    const wrongOrder = { ...order, failure_reason: 'Unknown: activity Heartbeat timeout' };
    expect(checkSagaAgainstLedger(wrongOrder, timedOut, ledger)).toEqual([
      expect.stringContaining(`the order's reason is "Unknown: activity Heartbeat timeout", but the first failure recorded is FraudSuspected`),
    ]);
  });

  test('a compensation the ledger shows but the result leaves out is caught, and the other way round', () => {
    const missing = { ...account, compensations: account.compensations.filter((c) => c.step !== 'fraud-check') };
    expect(checkSagaAgainstLedger(order, missing, ledger)).toEqual([
      "ord_1: the ledger has fraud-check's undo completed, but the saga does not list it",
    ]);
    const extra = { ...account, compensations: [...account.compensations, { step: 'charge-payment', status: 'done' }] };
    expect(checkSagaAgainstLedger(order, extra, ledger)).toEqual([
      'ord_1: the saga lists charge-payment as compensated, but its undo row is not completed',
    ]);
  });

  test('steps listed as done must have completed, and completed steps must be listed as done or compensated', () => {
    const short = { ...account, completedSteps: ['record-order'], compensations: account.compensations.filter((c) => c.step !== 'reserve-inventory') };
    expect(checkSagaAgainstLedger(order, short, ledger)).toEqual([
      'ord_1: the ledger has reserve-inventory completed, but the saga lists it neither as done nor as compensated',
      "ord_1: the ledger has reserve-inventory's undo completed, but the saga does not list it",
    ]);
    // A charge cancelled in flight that completed anyway: not done for the saga, but refunded.
    const charged = [...ledger, row('charge-payment', 'cancelled', { undone: 'completed' }), undoRow('charge-payment')];
    const cancelled = { ...account, compensations: [{ step: 'charge-payment', status: 'done' }, ...account.compensations] };
    expect(checkSagaAgainstLedger(order, cancelled, charged)).toEqual([]);
    expect(checkSagaAgainstLedger(order, account, charged)).toEqual([
      'ord_1: the ledger has charge-payment completed, but the saga lists it neither as done nor as compensated',
      "ord_1: the ledger has charge-payment's undo completed, but the saga does not list it",
    ]);
    const long = { ...account, completedSteps: [...account.completedSteps, 'fraud-check'] };
    expect(checkSagaAgainstLedger(order, long, ledger)).toEqual([
      'ord_1: the saga lists fraud-check as done, but the ledger has no completed fraud-check',
    ]);
  });

  test("the order's status must be the saga's outcome", () => {
    expect(checkSagaAgainstLedger({ ...order, status: 'cancelled' }, account, ledger)).toEqual([
      'ord_1: the saga ended compensated, but the order is cancelled',
    ]);
  });
});
