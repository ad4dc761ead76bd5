import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { captureHistories } from '@sagaflow/toolkit/replay';
import { startStack } from '../dev/stack';
import { bundleFromSource } from '../workers/toolkit-source';
import { runTripScenarios } from '../dev/trip-scenarios';
import { createTripWorker, migrateTrips } from '../examples/trip-booking';
import { runMain } from '../src/run-main';

export const TRIP_HISTORIES_DIR = path.resolve(__dirname, '../examples/trip-booking/histories');

const USAGE = `usage: npm run trip:histories:capture -- --label LABEL

Runs every path of the trip-booking example saga on a throwaway stack and
records its histories under examples/trip-booking/histories/LABEL (a-z, 0-9, -).`;

runMain(USAGE, async () => {
  const { values } = parseArgs({ options: { label: { type: 'string' } } });
  const label = values.label;
  if (!label || !/^[a-z0-9-]{1,20}$/.test(label)) {
    console.error(USAGE);
    return 2;
  }
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const log = (m: string) => console.log(`[capture] ${m}`);
  // Plaintext unless keys are set (as histories:capture): the trip's replay gate replays them without keys.
  const keyed = process.env.SAGAFLOW_PAYLOAD_KEYS || process.env.SAGAFLOW_PAYLOAD_KEYS_FILE;
  const stack = await startStack(loadConfig({ ...process.env, TEMPORAL_ADDRESS: '', ...(keyed ? {} : { SAGAFLOW_PAYLOAD_CODEC: 'off' }) }), log, {
    ephemeralTemporal: true,
  });
  await migrateTrips(stack.db);
  const taskQueue = `trip-capture-${label}`;
  const nativeConnection = await NativeConnection.connect({ address: stack.temporal.address });
  const worker = await createTripWorker({
    connection: nativeConnection,
    namespace: stack.temporal.namespace,
    taskQueue,
    deps: { db: stack.db, paymentProviderUrl: stack.paymentProviderUrl, providerTimeoutMs: 3000 },
    workerOptions: { bundlerOptions: { webpackConfigHook: bundleFromSource }, dataConverter: stack.dataConverter },
  });
  const running = worker.run();
  const connection = await Connection.connect({ address: stack.temporal.address });
  const client = new Client({ connection, namespace: stack.temporal.namespace, dataConverter: stack.dataConverter });
  try {
    const scenarios = await runTripScenarios(
      { client, db: stack.db, taskQueue, paymentProviderUrl: stack.paymentProviderUrl },
      label,
    );
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const written = await captureHistories(client, {
      query: `TaskQueue = '${taskQueue}'`,
      dir: TRIP_HISTORIES_DIR,
      label,
      scenarioOf: (id) => scenarios.get(id) ?? id,
      codeVersion: sha,
    });
    for (const e of written) log(`${e.file}: ${e.workflowId} ${e.status}`);
    return written.length === scenarios.size ? 0 : 1;
  } finally {
    worker.shutdown();
    await running;
    await nativeConnection.close();
    await connection.close();
    await stack.stop();
  }
});
