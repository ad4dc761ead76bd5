import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Config } from '../src/config';
import { migratePatiently } from '../src/db/migrate';
import { createPool, type Db } from '../src/db/pool';
import { startCarrier } from './services/carrier';
import type { RunningService } from './services/http';
import { startPaymentProvider } from './services/payment-provider';
import { startEmbeddedPostgres } from './postgres';
import { preferredPort } from '../src/ports';
import { findTemporalCli, startTemporalDevServer } from './temporal';
import { startNatsCluster, startNatsServer } from './nats';
import { CLUSTER_PG_MAX_CONNECTIONS, ensureServerTools, startTemporalCluster } from './temporal-cluster';
import { ensureUiServer, startTemporalUi } from './temporal-ui';
import { StartupError } from '../src/config';
import type { ConnectionClaim } from '../src/db/connection-budget';

export interface Stack {
  databaseUrl: string;
  db: Db;
  temporal: { address: string; namespace: string; uiUrl?: string; source: string };
  paymentProviderUrl: string;
  carrierUrl: string;
  /** The stream intake's broker: NATS_URL, or a nats-server of this stack's own. */
  natsUrl: string;
  /** Copies of each stream: 3 on the cluster stack's 3-node JetStream cluster, else 1. */
  natsReplicas: number;
  /** WEBHOOK_SECRETS_KEY, or one made once and kept in the state directory. */
  webhookSecretsKey: string;
  /** PostgreSQL, Temporal and NATS, each with a probe, and a restart where this stack started it (dev/stack-watch.ts). */
  parts: StackPart[];
  stop(): Promise<void>;
}

export interface StackPart {
  name: string;
  /** Resolves while the part answers. */
  probe(): Promise<void>;
  /** Starts the part again as this stack first did (same port, same state); absent for parts given by URL. */
  restart?(): Promise<void>;
  /** Whether the process this stack started for it has ended, and how. */
  exit?(): string | undefined;
}

/**
 * Brings up what is missing and connects to what exists: PostgreSQL
 * (DATABASE_URL or embedded), migrations, the payment provider and carrier
 * (their URLs or in-process services), Temporal (TEMPORAL_ADDRESS or the
 * CLI dev server, its state kept in SQLite so a restart keeps running sagas) and
 * NATS with JetStream for the stream intake (NATS_URL or a nats-server, its store
 * in the state directory).
 */
export interface StackOptions {
  /** Temporal in memory, no UI, any free port: for a throwaway run such as capturing histories. */
  ephemeralTemporal?: boolean;
  /**
   * 'cluster': a self-hosted Temporal cluster on the stack's PostgreSQL instead of the dev server
   * (dev/temporal-cluster.ts): the production server, each service as separate processes.
   */
  temporal?: 'dev' | 'cluster';
}

export async function startStack(config: Config, log: (m: string) => void, opts: StackOptions = {}): Promise<Stack> {
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    const stateDir = path.resolve(config.SAGAFLOW_STATE_DIR);
    let databaseUrl = config.DATABASE_URL;
    let restartPostgres: (() => Promise<void>) | undefined;
    if (databaseUrl) {
      log('PostgreSQL: DATABASE_URL');
    } else {
      const pgOptions = {
        dataDir: path.join(stateDir, 'pg'),
        port: config.SAGAFLOW_EMBEDDED_PG_PORT,
        // A cluster keeps its data here too: room for its hosts' pools beside sagaflow's.
        maxConnections: opts.temporal === 'cluster' ? CLUSTER_PG_MAX_CONNECTIONS : undefined,
        log,
      };
      const pg = await startEmbeddedPostgres(pgOptions);
      stops.push(pg.stop);
      databaseUrl = pg.url;
      restartPostgres = async () => {
        stops.push((await startEmbeddedPostgres(pgOptions)).stop);
      };
      log(`PostgreSQL: embedded, ${redact(pg.url)} (data in ${path.join(stateDir, 'pg')})`);
    }
    const applied = await migratePatiently(databaseUrl, { log: (l) => log(`${String(l.msg)}: ${String(l.error)}`) });
    if (applied.length) log(`migrations applied: ${applied.join(', ')}`);
    const db = createPool({ connectionString: databaseUrl });
    stops.push(() => db.end());

    // The provider and carrier stand for other companies' systems: their own pool, never sagaflow's.
    const servicesDb = createPool({ connectionString: databaseUrl, max: 10 });
    stops.push(() => servicesDb.end());
    const service = async (url: string | undefined, name: string, start: () => Promise<RunningService>) => {
      if (url) return url;
      const svc = await start();
      stops.push(svc.close);
      log(`${name}: ${svc.url}`);
      return svc.url;
    };
    const paymentProviderUrl = await service(config.PAYMENT_PROVIDER_URL, 'payment provider', () =>
      startPaymentProvider({ db: servicesDb }),
    );
    const carrierUrl = await service(config.CARRIER_URL, 'carrier', () => startCarrier({ db: servicesDb }));

    let temporal: Stack['temporal'];
    let temporalPart: Pick<StackPart, 'restart' | 'exit'> = {};
    if (config.TEMPORAL_ADDRESS) {
      temporal = { address: config.TEMPORAL_ADDRESS, namespace: config.TEMPORAL_NAMESPACE, source: 'TEMPORAL_ADDRESS' };
      log(`Temporal: ${config.TEMPORAL_ADDRESS} (TEMPORAL_ADDRESS)`);
    } else if (opts.temporal === 'cluster') {
      const tools = await ensureServerTools(log);
      const cli = await findTemporalCli({ cliPath: config.TEMPORAL_CLI_PATH, log });
      if (!tools || !cli) throw new StartupError('the Temporal cluster needs Go to build the server and its SQL tool (see the lines above)');
      const pg = new URL(databaseUrl);
      const cluster = await startTemporalCluster(tools, {
        pg: { host: pg.hostname, port: Number(pg.port || 5432), user: decodeURIComponent(pg.username), password: decodeURIComponent(pg.password) },
        database: 'temporal',
        namespace: config.TEMPORAL_NAMESPACE,
        stateDir: path.join(stateDir, 'cluster'),
        cli: cli.path,
        port: await preferredPort(7233),
        otherConnections: stackConnectionClaims(config.DATABASE_POOL_MAX),
        log,
      });
      stops.push(cluster.stop);
      // The Web UI is a convenience: without Go's module proxy it is left out, the cluster still runs.
      const uiServer = await ensureUiServer(log);
      const ui = uiServer
        ? await startTemporalUi({
            server: uiServer,
            temporalAddress: cluster.address,
            namespace: cluster.namespace,
            stateDir: path.join(stateDir, 'cluster', 'ui'),
            port: await preferredPort(8233),
            log,
          })
        : undefined;
      if (ui) stops.push(ui.stop);
      temporal = {
        address: cluster.address,
        namespace: cluster.namespace,
        uiUrl: ui?.url,
        source: `cluster (frontends ${cluster.frontends.join(', ')} behind ${cluster.address})`,
      };
    } else {
      const devOptions = opts.ephemeralTemporal
        ? { cliPath: config.TEMPORAL_CLI_PATH, namespace: config.TEMPORAL_NAMESPACE, log }
        : {
            cliPath: config.TEMPORAL_CLI_PATH,
            namespace: config.TEMPORAL_NAMESPACE,
            dbFilename: path.join(stateDir, 'temporal.sqlite'),
            ui: true,
            port: await preferredPort(7233),
            uiPort: await preferredPort(8233),
            log,
          };
      let server = await startTemporalDevServer(devOptions);
      stops.push(() => server.stop());
      temporal = server;
      // A restart takes the same port, UI port and SQLite file: running sagas carry on.
      const port = Number(server.address.split(':').pop());
      const uiPort = server.uiUrl ? Number(new URL(server.uiUrl).port) : undefined;
      temporalPart = {
        restart: async () => {
          server = await startTemporalDevServer({ ...devOptions, port, uiPort });
        },
        exit: () => {
          const e = server.exit?.();
          return e && (e.signal ? `killed by ${e.signal}` : `exit code ${e.code}`);
        },
      };
      log(`Temporal: dev server at ${server.address} via ${server.source}`);
    }
    let natsUrl = config.NATS_URL;
    let natsReplicas = config.NATS_STREAM_REPLICAS;
    let natsPart: Pick<StackPart, 'restart' | 'exit'> = {};
    if (natsUrl) {
      log('NATS: NATS_URL');
    } else if (opts.temporal === 'cluster') {
      // Beside the Temporal cluster, a 3-node JetStream cluster: the intake's and the relay's streams are R3.
      const nats = await startNatsCluster({ dir: path.join(stateDir, 'cluster', 'nats'), log: (m: string) => log(`NATS: ${m}`) });
      stops.push(() => nats.stop());
      natsUrl = nats.url;
      natsReplicas = 3;
    } else {
      // Its JetStream store in the state directory: a restart keeps the streams and what they hold.
      const natsOptions = { port: await preferredPort(4222), storeDir: path.join(stateDir, 'nats'), log: (m: string) => log(`NATS: ${m}`) };
      let nats = await startNatsServer(natsOptions);
      stops.push(() => nats.stop());
      natsUrl = nats.url;
      natsPart = {
        restart: async () => {
          nats = await startNatsServer(natsOptions);
        },
        exit: () => nats.exit(),
      };
    }
    const natsAddress = natsUrl.split(',')[0]!.replace(/^nats:\/\//, '');
    const parts: StackPart[] = [
      { name: 'PostgreSQL', probe: async () => void (await db.query('SELECT 1')), restart: restartPostgres },
      { name: 'Temporal', probe: () => tcpProbe(temporal.address), ...temporalPart },
      { name: 'NATS', probe: () => tcpProbe(natsAddress), ...natsPart },
    ];
    return { databaseUrl, db, temporal, paymentProviderUrl, carrierUrl, natsUrl, natsReplicas, webhookSecretsKey: devSecretsKey(config, stateDir), parts, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The dev stack's key for webhook secrets: made once, kept (mode 600) beside its other state. */
function devSecretsKey(config: Config, stateDir: string): string {
  if (config.WEBHOOK_SECRETS_KEY) return config.WEBHOOK_SECRETS_KEY;
  const file = path.join(stateDir, 'webhook-secrets.key');
  if (!fs.existsSync(file)) {
    fs.mkdirSync(stateDir, { recursive: true });
    fs.writeFileSync(file, randomBytes(32).toString('base64'), { mode: 0o600 });
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/** Resolves if something accepts a TCP connection at host:port within a second. */
function tcpProbe(address: string): Promise<void> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)), timeout: 1000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new Error('no answer within 1 s'));
    });
    socket.once('error', reject);
  });
}

/** This stack's two pools, and room for an API, the services and eight workers at DATABASE_POOL_MAX each. */
export function stackConnectionClaims(poolMax: number): ConnectionClaim[] {
  return [
    { who: 'the stack (its pool and the services)', processes: 2, each: 10 },
    { who: 'sagaflow processes (API, services, 8 workers)', processes: 10, each: poolMax },
  ];
}

export function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
}
