import type { Sinks } from '@temporalio/workflow';

/**
 * How a saga reports to the worker's metrics. Sink calls are not commands, so
 * they never touch determinism, and by default they are not repeated on replay.
 */
export interface SagaMetricsSinks extends Sinks {
  sagaMetrics: {
    started(): void;
    ended(status: 'completed' | 'compensated' | 'cancelled' | 'failed'): void;
    compensationFailed(step: string): void;
  };
}
