import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../src/config';
import { freePort } from '../src/ports';
import { startEmbeddedPostgres, type RunningPostgres } from './postgres';
import { startTemporalDevServer, type TemporalServer } from './temporal';
import { startNatsServer, type NatsServer } from './nats';

/**
 * The real stack a test run (or a mutation run) shares: PostgreSQL from
 * DATABASE_URL or an embedded one in a temporary directory, and Temporal from
 * TEMPORAL_ADDRESS or the CLI's dev server, NATS from NATS_URL or a nats-server
 * of its own. What it started, it stops.
 */
export interface TestStack {
  databaseUrl: string;
  temporalAddress: string;
  /** The Temporal dev server's own Prometheus metrics, when this stack started it (not with TEMPORAL_ADDRESS). */
  temporalMetricsUrl?: string;
  natsUrl: string;
  /**
   * SAGAFLOW_PAYLOAD_KEYS for the run when the environment gives none: a key made for this run, so
   * every saga a test runs goes through the payload codec as in production. Undefined when the
   * environment sets keys itself or SAGAFLOW_PAYLOAD_CODEC=off (a plaintext run).
   */
  payloadKeys?: string;
  stop(): Promise<void>;
}

export interface TestStackOptions {
  log: (message: string) => void;
  /** max_connections of an embedded PostgreSQL (its default otherwise). */
  maxConnections?: number;
}

export async function startTestStack({ log, maxConnections }: TestStackOptions): Promise<TestStack> {
  const config = loadConfig();
  const started: { pg?: RunningPostgres; temporal?: TemporalServer; nats?: NatsServer; dir?: string } = {};
  const stop = async () => {
    await started.nats?.stop();
    if (started.nats) fs.rmSync(started.nats.storeDir, { recursive: true, force: true });
    await started.temporal?.stop();
    await started.pg?.stop();
    if (started.dir) fs.rmSync(started.dir, { recursive: true, force: true });
  };
  try {
    let databaseUrl = config.DATABASE_URL;
    if (!databaseUrl) {
      started.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-test-pg-'));
      fs.chmodSync(started.dir, 0o755);
      started.pg = await startEmbeddedPostgres({
        dataDir: path.join(started.dir, 'data'),
        port: await freePort(),
        persistent: false,
        maxConnections,
        log,
      });
      databaseUrl = started.pg.url;
      log(`embedded PostgreSQL at ${databaseUrl}`);
    } else {
      log('PostgreSQL from DATABASE_URL');
    }
    let temporalAddress = config.TEMPORAL_ADDRESS;
    if (!temporalAddress) {
      started.temporal = await startTemporalDevServer({ cliPath: config.TEMPORAL_CLI_PATH, log });
      temporalAddress = started.temporal.address;
      log(`Temporal dev server at ${temporalAddress} (${started.temporal.source}), its metrics at ${started.temporal.metricsUrl}`);
    } else {
      log(`Temporal at ${temporalAddress} from TEMPORAL_ADDRESS`);
    }
    let natsUrl = config.NATS_URL;
    if (!natsUrl) {
      started.nats = await startNatsServer({ log });
      natsUrl = started.nats.url;
    } else {
      log(`NATS at ${natsUrl} from NATS_URL`);
    }
    const ownKeys = config.SAGAFLOW_PAYLOAD_CODEC === 'on' && !config.SAGAFLOW_PAYLOAD_KEYS && !config.SAGAFLOW_PAYLOAD_KEYS_FILE;
    const payloadKeys = ownKeys ? `test-${randomBytes(3).toString('hex')}:${randomBytes(32).toString('base64')}` : undefined;
    log(`payload encryption: ${payloadKeys ? 'a key made for this run' : config.SAGAFLOW_PAYLOAD_CODEC === 'off' ? 'off (SAGAFLOW_PAYLOAD_CODEC=off)' : 'the keys the environment sets'}`);
    return { databaseUrl, temporalAddress, temporalMetricsUrl: started.temporal?.metricsUrl, natsUrl, payloadKeys, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
