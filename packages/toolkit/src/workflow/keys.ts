/**
 * Idempotency keys, defined once for the saga and the ledger alike.
 *
 * A step's key is `<workflowId>/<step>`; its compensation's is
 * `<workflowId>/<step>/undo`. Not the run ID (it changes on reset, retry and
 * continue-as-new), not the attempt number (that defeats retry dedupe), not the
 * activity ID (a sequence number that shifts when code changes). Workflow IDs
 * may contain `/`; step names may not, and no step is called `undo`, so every
 * key parses back into exactly one (workflow, step, direction).
 *
 * Pure: importable from workflow code.
 */

const STEP_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const UNDO = 'undo';

export interface StepKey {
  key: string;
  workflowId: string;
  step: string;
  /** True for a compensation's key. */
  undo: boolean;
  /** The forward step's key (the key itself when it is one). */
  forwardKey: string;
}

export class InvalidStepKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidStepKeyError';
  }
}

export function assertStepName(step: string): void {
  if (!STEP_NAME.test(step) || step === UNDO) {
    throw new InvalidStepKeyError(`invalid step name "${step}": lower-case letters, digits, - _ . (not "undo"), at most 63`);
  }
}

/** The forward key of `step` in the saga `workflowId`. */
export function stepKey(workflowId: string, step: string): string {
  assertStepName(step);
  if (!workflowId) throw new InvalidStepKeyError('a step key needs a workflow ID');
  return `${workflowId}/${step}`;
}

/** The key of the compensation of `step` in the saga `workflowId`. */
export function undoKey(workflowId: string, step: string): string {
  return `${stepKey(workflowId, step)}/${UNDO}`;
}

/** Both keys of every step of one saga: `keys.step('charge')`, `keys.undo('charge')`. */
export function sagaKeys(workflowId: string): { step(step: string): string; undo(step: string): string } {
  return { step: (step) => stepKey(workflowId, step), undo: (step) => undoKey(workflowId, step) };
}

/** Parses a key built by stepKey or undoKey; throws InvalidStepKeyError for anything else. */
export function parseStepKey(key: string): StepKey {
  const parts = key.split('/');
  // A last part "undo" with too few parts before it leaves no workflow ID or step, refused below.
  const undo = parts[parts.length - 1] === UNDO;
  if (undo) parts.pop();
  const step = parts.pop() ?? '';
  const workflowId = parts.join('/');
  if (!workflowId || !STEP_NAME.test(step) || step === UNDO) {
    throw new InvalidStepKeyError(`"${key}" is not a step key: expected <workflowId>/<step> or <workflowId>/<step>/undo`);
  }
  const forwardKey = `${workflowId}/${step}`;
  return { key, workflowId, step, undo, forwardKey };
}
