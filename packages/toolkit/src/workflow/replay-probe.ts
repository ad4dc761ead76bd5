import { proxySinks, type Sinks, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

/**
 * Reports how a workflow ended, also while it is being replayed, so a replay
 * check can compare the result the current code computes with the one the
 * history recorded. Installed only by replay workers.
 */
export interface ReplayProbeSinks extends Sinks {
  replayProbe: {
    completed(result: unknown): void;
    failed(message: string): void;
  };
}

const { replayProbe } = proxySinks<ReplayProbeSinks>();

export const interceptors: WorkflowInterceptorsFactory = () => ({
  inbound: [
    {
      async execute(input, next) {
        try {
          const result = await next(input);
          replayProbe.completed(result);
          return result;
        } catch (err) {
          replayProbe.failed((err as Error).message);
          throw err;
        }
      },
    },
  ],
});
