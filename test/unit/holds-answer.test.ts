/**
 * holdsAnswer (sagaflow/ledger): whether a step's row holds an answer an earlier attempt got, as a
 * workflow task retried after a lost one asks when a local step fails on the way to it
 * (SagaOptions.stepAnswered).
 */
import { holdsAnswer, type LedgerEntry } from '../../packages/toolkit/src/ledger';

const wf = 'order-ord_1';
const cause = { cancelled: false, failure: { type: 'InvalidInput', message: 'carrier refused create-shipment with 400' } };

function row(step: string, state: LedgerEntry['state'], extra: Partial<LedgerEntry> = {}): LedgerEntry {
  return { key: `${wf}/${step}`, workflowId: wf, step, fingerprint: null, state, result: null, error: null, undone: null, cause: null, ...extra };
}

test.each([
  ['completed', row('charge-payment', 'completed'), true],
  ['failed (a business failure recorded)', row('charge-payment', 'failed'), true],
  ['completed, then compensated', row('charge-payment', 'cancelled', { undone: 'completed', cause }), true],
  ['failed, then tombstoned', row('charge-payment', 'cancelled', { undone: 'failed', cause }), true],
  ['pending (the call in flight, or its answer lost)', row('charge-payment', 'pending'), false],
  ['tombstoned while pending', row('charge-payment', 'cancelled', { undone: 'pending', cause }), false],
  ['abandoned before it ran', row('charge-payment', 'cancelled', { cause }), false],
] as const)('a row %s: %s', (_name, r, answered) => {
  expect(holdsAnswer([row('record-order', 'completed'), r], `${wf}/charge-payment`)).toBe(answered);
});

test('no row for the key (another step answered, or the key of another saga): no answer', () => {
  const rows = [row('record-order', 'completed'), row('charge-payment/undo', 'completed')];
  expect(holdsAnswer(rows, `${wf}/charge-payment`)).toBe(false);
  expect(holdsAnswer(rows, `order-ord_2/record-order`)).toBe(false);
});
