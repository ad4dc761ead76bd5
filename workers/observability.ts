import type { ActivityInterceptorsFactory, InjectedSinks } from '@temporalio/worker';
import type { SagaMetrics } from '../src/observability/metrics';
import { describeFailure } from '@sagaflow/toolkit/workflow';
import type { SagaMetricsSinks } from '../workflows/order/metrics-sinks';

/**
 * Times every activity attempt into sagaflow_step_duration_seconds and logs one
 * line per attempt with the workflow ID, the step and its idempotency key (the
 * activity logger adds workflowId, activityType and attempt to every line).
 */
export function stepObserver(metrics?: SagaMetrics): ActivityInterceptorsFactory {
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const started = process.hrtime.bigint();
        const key = (input.args[0] as { key?: unknown } | undefined)?.key;
        const step = ctx.info.activityType;
        const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
        try {
          const result = await next(input);
          const s = seconds();
          metrics?.stepDuration.observe({ step, outcome: 'ok' }, s);
          ctx.log.info('step attempt succeeded', { idempotencyKey: key, step, durationMs: Math.round(s * 1000) });
          return result;
        } catch (err) {
          const s = seconds();
          const failure = describeFailure(err);
          metrics?.stepDuration.observe({ step, outcome: failure.type }, s);
          ctx.log.warn('step attempt failed', {
            idempotencyKey: key,
            step,
            durationMs: Math.round(s * 1000),
            failureType: failure.type,
            error: failure.message,
          });
          throw err;
        }
      },
    },
  });
}

/** The sinks the saga workflow reports through: counted when a metrics instance is given, each ending logged when a log is. */
export function sagaMetricsSinks(metrics?: SagaMetrics, log?: (line: Record<string, unknown>) => void): InjectedSinks<SagaMetricsSinks> {
  return {
    sagaMetrics: {
      started: { fn: () => metrics?.sagasStarted.inc() },
      ended: {
        fn: (info, status, failure) => {
          if (status === 'completed') metrics?.sagasCompleted.inc();
          else if (status === 'compensated') metrics?.sagasCompensated.inc({ reason: 'failure' });
          else if (status === 'cancelled') metrics?.sagasCompensated.inc({ reason: 'cancel' });
          else metrics?.sagasFailed.inc();
          // One line per saga, when it ends: what an operator looks for first. A failed one (money or
          // stock may be held) is an error, an unwound one a warning.
          log?.({
            level: status === 'completed' ? 'info' : status === 'failed' ? 'error' : 'warn',
            msg: 'saga ended',
            workflowId: info.workflowId,
            runId: info.runId,
            status,
            durationMs: Date.now() - info.startTime.getTime(),
            ...(failure ? { failureType: failure.type, error: failure.message } : {}),
          });
        },
      },
      compensationFailed: { fn: (_info, step) => metrics?.compensationFailures.inc({ step }) },
    },
  };
}
