import type { Sinks } from '@temporalio/workflow';

/**
 * How a saga reports to the worker's metrics. Sink calls are not commands, so
 * they never touch determinism, and by default they are not repeated on replay.
 */
export interface SagaMetricsSinks extends Sinks {
  sagaMetrics: {
    started(): void;
    /** `failure`: why it unwound or failed (its type and message); none when it completed. */
    ended(status: 'completed' | 'compensated' | 'cancelled' | 'failed', failure?: { type: string; message: string }): void;
    compensationFailed(step: string): void;
  };
}
