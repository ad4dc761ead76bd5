import { Worker, type NativeConnection, type WorkerOptions } from '@temporalio/worker';
import { createTripActivities, type TripDeps } from './activities';

export const TRIP_WORKFLOWS_PATH = require.resolve('./workflows');

/** A worker for trips: the workflow and its activities on the trip's own task queue. */
export function createTripWorker(opts: {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  deps: TripDeps;
  /** E.g. a webpack hook; a prebuilt workflowBundle also goes here. */
  workerOptions?: Partial<WorkerOptions>;
}): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    workflowsPath: TRIP_WORKFLOWS_PATH,
    activities: createTripActivities(opts.deps),
    ...opts.workerOptions,
  });
}
