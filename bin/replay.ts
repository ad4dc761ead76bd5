import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { replayFromServer, summaryTable } from '@sagaflow/toolkit/replay';
import { orderSagaReplayOptions } from '../workers/worker';
import { clientConnectionOptions, temporalTargetOrExplain } from '../src/temporal-connect';
import { runMain } from '../src/run-main';
import { dataConverterOf, payloadCodecSetting } from '../src/codec/settings';
import { ORDER_SAGA_TYPES_QUERY } from '../workflows/order/definitions';

const USAGE = `usage: npm run replay -- --query "LIST FILTER" [--limit N] [--address HOST:PORT]

Replays recent histories from the server at TEMPORAL_ADDRESS (or --address)
against this build, e.g. --query "ExecutionStatus = 'Running'" before a deploy.
Encrypted histories are opened with SAGAFLOW_PAYLOAD_KEYS (or _FILE): a history
sealed with a key not given fails, naming it. Prints a summary and exits 1 if any
history fails to replay.`;

/**
 * `npm run replay -- --query "<list filter>" [--limit N]`: replays recent
 * histories from the server at TEMPORAL_ADDRESS (or --address) against this
 * build; prints a summary and exits 1 if any fails.
 */
runMain(USAGE, async () => {
  const { values } = parseArgs({
    options: { query: { type: 'string' }, address: { type: 'string' }, limit: { type: 'string' } },
  });
  // A bad variable stops here, named; encrypted histories are opened with the workers' keys.
  const dataConverter = dataConverterOf(payloadCodecSetting(loadConfig()));
  const target = temporalTargetOrExplain(values.address ? { ...process.env, TEMPORAL_ADDRESS: values.address } : process.env);
  const query = values.query ?? ORDER_SAGA_TYPES_QUERY;
  const limit = values.limit ? Number(values.limit) : 100;
  if (!Number.isInteger(limit) || limit < 1) {
    console.error('--limit must be a positive integer');
    return 2;
  }
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const connection = await Connection.connect(clientConnectionOptions(target.connectionOptions));
  try {
    const outcomes = await replayFromServer(new Client({ connection, namespace: target.namespace, dataConverter }), query, { ...orderSagaReplayOptions(), limit });
    if (outcomes.length === 0) {
      console.log(`no workflows match: ${query}`);
      return 0;
    }
    console.table(summaryTable(outcomes));
    const failed = outcomes.filter((o) => !o.ok).length;
    console.log(`${outcomes.length - failed} replayed ok, ${failed} failed (query: ${query})`);
    return failed === 0 ? 0 : 1;
  } finally {
    await connection.close();
  }
});
