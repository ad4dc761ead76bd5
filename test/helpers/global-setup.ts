import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs';
import { loadConfig } from '../../src/config';
import { startEmbeddedPostgres, type RunningPostgres } from '../../dev/postgres';
import { CLUSTER_PG_MAX_CONNECTIONS } from '../../dev/temporal-cluster';
import { startTemporalDevServer, type TemporalServer } from '../../dev/temporal';
import { freePort } from '../../src/ports';
import { ensureComposeCheck, ensurePromtool } from '../../dev/tools';

/**
 * Brings up the real stack once for the whole run: PostgreSQL (DATABASE_URL, or
 * an embedded one) and the Temporal dev server (TEMPORAL_ADDRESS, or the CLI).
 * Test files read the addresses from the environment; each uses its own schema
 * and task queues.
 */
export default async function globalSetup(): Promise<void> {
  const config = loadConfig();
  const log = (m: string) => process.stderr.write(`[test stack] ${m}\n`);
  const handles: { pg?: RunningPostgres; temporal?: TemporalServer; dir?: string } = {};

  if (!config.DATABASE_URL) {
    handles.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-test-pg-'));
    fs.chmodSync(handles.dir, 0o755);
    handles.pg = await startEmbeddedPostgres({
      dataDir: path.join(handles.dir, 'data'),
      port: await freePort(),
      persistent: false,
      // The cluster suite's Temporal hosts keep their data here too (dev/temporal-cluster.ts checks the budget).
      maxConnections: CLUSTER_PG_MAX_CONNECTIONS,
      log,
    });
    process.env.DATABASE_URL = handles.pg.url;
    log(`embedded PostgreSQL at ${handles.pg.url}`);
  } else {
    log('PostgreSQL from DATABASE_URL');
  }

  if (!config.TEMPORAL_ADDRESS) {
    handles.temporal = await startTemporalDevServer({ cliPath: config.TEMPORAL_CLI_PATH, log });
    process.env.TEMPORAL_ADDRESS = handles.temporal.address;
    log(`Temporal dev server at ${handles.temporal.address} (${handles.temporal.source})`);
  } else {
    log(`Temporal at ${config.TEMPORAL_ADDRESS} from TEMPORAL_ADDRESS`);
  }
  // The checkers some tests run (built or fetched once into the cache; `npm run tools:install`).
  const promtool = await ensurePromtool(log);
  if (promtool) process.env.SAGAFLOW_PROMTOOL = promtool;
  const composeCheck = await ensureComposeCheck(log);
  if (composeCheck) process.env.SAGAFLOW_COMPOSE_CHECK = composeCheck;
  (globalThis as Record<string, unknown>).__sagaflowStack = handles;
}
