import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { startStack } from '../dev/stack';
import { captureHistories } from '@sagaflow/toolkit/replay';
import { ORDER_HISTORIES_DIR, runScenarios } from '../dev/replay-scenarios';
import { createSagaWorker } from '../workers/worker';
import { runMain } from '../src/run-main';
import { PACKAGE_ROOT } from '../src/paths';
import { dataConverterOf, payloadCodecSetting } from '../src/codec/settings';
import { ORDER_SAGA_TYPES_QUERY } from '../workflows/order/definitions';

const USAGE = `usage:
  npm run histories:capture -- --label v2
      run every saga scenario on a throwaway stack and write test/replay/histories/v2-<scenario>.<runId>.json
  npm run histories:capture -- --label prod --address host:7233 --query "WorkflowType IN ('orderSaga', 'orderSagaV2')"
      capture what a running server has; the scenario name is the workflow ID

Every run the query lists gets a file of its own (a workflow ID started again
adds one), and its manifest entry describes that run. Capturing into the same
folder again rewrites each run's own file and entry.

Histories are written as the server keeps them. The scenarios run in plaintext
unless SAGAFLOW_PAYLOAD_KEYS (or SAGAFLOW_PAYLOAD_KEYS_FILE) is set: their orders
are made up, and the replay gate must replay them without keys. Sealed histories
(those, or a server's) list their key IDs in the manifest (payloadKeyIds), and
replaying them needs those keys in SAGAFLOW_PAYLOAD_KEYS.`;

/**
 * Fetches workflow histories by a list query (`list().intoHistories()`) and
 * writes them as replay fixtures with a manifest entry each.
 */
runMain(USAGE, async () => {
  const { values } = parseArgs({
    options: { label: { type: 'string' }, address: { type: 'string' }, query: { type: 'string' }, out: { type: 'string' } },
  });
  if (!values.label || !/^[a-z0-9-]{1,20}$/.test(values.label)) {
    console.error(USAGE);
    return 2;
  }
  const label = values.label;
  const dir = values.out ?? ORDER_HISTORIES_DIR;
  // Core's own log lines are forwarded to the same logger (no raw coloured lines from the native layer).
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' }, forward: {} } } });
  const log = (m: string) => console.log(`[capture] ${m}`);

  let client: Client;
  let query: string;
  let scenarioOf: (workflowId: string) => string = (id) => id;
  let stop = async () => undefined as void;
  if (values.address) {
    const config = loadConfig();
    const connection = await Connection.connect({ address: values.address });
    // The histories are written sealed as they are; the keys (when set) let this client read what it lists.
    const keyed = config.SAGAFLOW_PAYLOAD_KEYS || config.SAGAFLOW_PAYLOAD_KEYS_FILE;
    client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: keyed ? dataConverterOf(payloadCodecSetting(config)) : undefined });
    query = values.query ?? `${ORDER_SAGA_TYPES_QUERY} AND ExecutionStatus != 'Running'`;
    stop = () => connection.close();
  } else {
    const keyed = process.env.SAGAFLOW_PAYLOAD_KEYS || process.env.SAGAFLOW_PAYLOAD_KEYS_FILE;
    const config = loadConfig({ ...process.env, TEMPORAL_ADDRESS: '', ...(keyed ? {} : { SAGAFLOW_PAYLOAD_CODEC: 'off' }) });
    const stack = await startStack(config, log, { ephemeralTemporal: true });
    const taskQueue = `capture-${label}`;
    const nativeConnection = await NativeConnection.connect({ address: stack.temporal.address });
    const worker = await createSagaWorker({
      connection: nativeConnection,
      namespace: stack.temporal.namespace,
      taskQueue,
      dataConverter: stack.dataConverter,
      deps: { db: stack.db, paymentProviderUrl: stack.paymentProviderUrl, carrierUrl: stack.carrierUrl, providerTimeoutMs: 3000 },
    });
    const running = worker.run();
    const connection = await Connection.connect({ address: stack.temporal.address });
    client = new Client({ connection, namespace: stack.temporal.namespace, dataConverter: stack.dataConverter });
    log('running the scenarios');
    const scenarios = await runScenarios(
      { client, db: stack.db, taskQueue, paymentProviderUrl: stack.paymentProviderUrl, carrierUrl: stack.carrierUrl },
      label,
    );
    scenarioOf = (id) => scenarios.get(id) ?? id;
    query = `TaskQueue = '${taskQueue}'`;
    stop = async () => {
      worker.shutdown();
      await running;
      await nativeConnection.close();
      await connection.close();
      await stack.stop();
    };
  }

  const written = await captureHistories(client, { query, dir, label, scenarioOf, codeVersion: codeVersionNow() });
  for (const e of written) log(`${e.file}: ${e.workflowId} ${e.status}${e.payloadKeyIds ? ` (sealed with ${e.payloadKeyIds.join(', ')})` : ''}`);
  const count = written.length;
  log(`${count} histories written to ${dir}`);
  await stop();
  return count > 0 ? 0 : 1;
});

function codeVersionNow(): string {
  const { version } = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };
  try {
    const sha = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return `${version}+${sha}`;
  } catch {
    return version;
  }
}
