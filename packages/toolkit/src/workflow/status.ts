/**
 * What a saga reports about itself (status(), the UI's current details) and how
 * long it waits between rounds of a failing step or compensation. Pure: importable
 * from workflow code, and tested outside it.
 */
import type { SagaFailureInfo } from './failures';

export interface CompensationRecord {
  step: string;
  status: 'pending' | 'running' | 'retrying' | 'done' | 'failed';
  attempts: number;
  lastError?: string;
}

export interface RetryRecord {
  step: string;
  attempts: number;
  lastError?: string;
}

export type SagaPhase = 'running' | 'compensating' | 'completed' | 'compensated' | 'cancelled' | 'failed';

export interface SagaStatus {
  phase: SagaPhase;
  /** The step in flight; several, comma-separated, while steps run in parallel (Saga.all). */
  currentStep: string | null;
  completedSteps: string[];
  pivotStarted: boolean;
  pivotCompleted: boolean;
  cancelRequested: boolean;
  compensations: CompensationRecord[];
  /** Retriable steps still being retried after the pivot. */
  retries: RetryRecord[];
  failure?: SagaFailureInfo;
  /** Held for an operator: a compensation failed for good (SagaOptions.holdForOperator). */
  awaitingOperator?: boolean;
  /** How a held saga was settled: its failed compensations retried and done, or settled by hand. */
  resolution?: { how: 'retried' | 'manual'; by: string; note?: string };
}

/** A deep copy: what status() hands out never aliases the saga's own state. */
export function cloneStatus(s: SagaStatus): SagaStatus {
  return {
    ...s,
    completedSteps: [...s.completedSteps],
    compensations: s.compensations.map((c) => ({ ...c })),
    retries: s.retries.map((r) => ({ ...r })),
    failure: s.failure ? { ...s.failure } : undefined,
    resolution: s.resolution ? { ...s.resolution } : undefined,
  };
}

const PHASE_WORDS: Record<SagaPhase, string> = {
  running: 'Running',
  compensating: 'Compensating (undoing its steps)',
  completed: 'Completed: every step done',
  compensated: 'Compensated: a step failed for good and the steps before it were undone',
  cancelled: 'Cancelled on request: the steps done were undone',
  failed: 'FAILED: needs an operator',
};

/** A saga's status as Temporal markdown, for the UI's current details (and anyone else who shows it). */
export function describeSagaStatus(s: SagaStatus): string {
  const lines = [`**${PHASE_WORDS[s.phase]}**`];
  if (s.failure) lines.push(`Cause: ${s.failure.type}: ${s.failure.message}`);
  if (s.currentStep) lines.push(`Step in flight: ${s.currentStep}`);
  if (s.completedSteps.length) lines.push(`Done: ${s.completedSteps.join(', ')}`);
  if (s.compensations.length) {
    lines.push(`Undone: ${s.compensations.map((c) => `${c.step} (${c.status}${c.attempts > 1 ? `, ${c.attempts} attempts` : ''})`).join(', ')}`);
  }
  if (s.retries.length) lines.push(`Retrying: ${s.retries.map((r) => r.step).join(', ')}`);
  if (s.awaitingOperator) lines.push('Held for an operator: retry its failed compensations once the cause is fixed, or resolve it by hand');
  if (s.resolution) lines.push(`Resolved (${s.resolution.how}) by ${s.resolution.by}${s.resolution.note ? `: ${s.resolution.note}` : ''}`);
  return lines.join('\n\n');
}

/**
 * The wait before round `attempt + 1` of a failing retriable step or compensation: `initialMs`
 * doubling each round (1 s by default), never more than `maxMs` (60 s by default).
 */
export function backoffMs(attempt: number, initialMs = 1000, maxMs = 60_000): number {
  return Math.min(maxMs, initialMs * 2 ** Math.min(attempt - 1, 20));
}
