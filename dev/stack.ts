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
import { startPostgresHa, type PostgresHa } from './postgres-ha';
import { preferredPort } from '../src/ports';
import { findTemporalCli, startTemporalDevServer } from './temporal';
import { startNatsCluster, startNatsServer } from './nats';
import { CLUSTER_PG_MAX_CONNECTIONS, ensureServerTools, startTemporalCluster } from './temporal-cluster';
import { ensureUiServer, startTemporalUi } from './temporal-ui';
import { StartupError } from '../src/config';
import type { ConnectionClaim } from '../src/db/connection-budget';
import type { DataConverter } from '@temporalio/common';
import { codecOf, dataConverterOf, payloadCodecSetting, type PayloadCodecSetting } from '../src/codec/settings';
import { startCodecServer } from '../src/codec/server';

export interface Stack {
  databaseUrl: string;
  db: Db;
  temporal: { address: string; namespace: string; uiUrl?: string; metricsUrl?: string; source: string };
  paymentProviderUrl: string;
  carrierUrl: string;
  /** The stream intake's broker: NATS_URL, or a nats-server of this stack's own. */
  natsUrl: string;
  /** Copies of each stream: 3 on the cluster stack's 3-node JetStream cluster, else 1. */
  natsReplicas: number;
  /** WEBHOOK_SECRETS_KEY, or one made once and kept in the state directory. */
  webhookSecretsKey: string;
  /**
   * The payload codec's variables for every process on this stack: the environment's, else
   * SAGAFLOW_PAYLOAD_KEYS_FILE naming a key made once and kept in the state directory.
   */
  payloadEnv?: Record<string, string>;
  /** What every client and worker on this stack is given: the codec of payloadEnv (absent: the environment's). */
  dataConverter?: DataConverter;
  /** The codec server the Temporal UI decodes through, with its bearer token (for the CLI); absent without a UI. */
  codecServer?: { url: string; token: string };
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
  /**
   * 'ha': sagaflow's database as a primary with a synchronous standby under pg_auto_failover
   * (dev/postgres-ha.ts), in a temporary directory, reached through a multi-host DATABASE_URL;
   * the Temporal dev server's SQLite file goes there too, so both start afresh together.
   */
  postgres?: 'embedded' | 'ha';
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
    let ha: PostgresHa | undefined;
    if (opts.postgres === 'ha' && (databaseUrl || opts.temporal === 'cluster')) {
      throw new StartupError(
        databaseUrl
          ? '--postgres ha starts a database of its own: unset DATABASE_URL'
          : '--postgres ha runs with the Temporal dev server: the cluster keeps its own data in the stack\'s one PostgreSQL',
      );
    }
    if (databaseUrl) {
      log('PostgreSQL: DATABASE_URL');
    } else if (opts.postgres === 'ha') {
      ha = await startPostgresHa({ log });
      stops.push(ha.stop);
      databaseUrl = ha.url;
      const { primary, standbys } = await ha.waitUntilReplicating();
      const { synchronousStandbyNames } = await ha.replication();
      log(
        `PostgreSQL: pg_auto_failover, primary ${primary.name} (127.0.0.1:${primary.port}), standby ${standbys.map((s) => `${s.name} (127.0.0.1:${s.port})`).join(', ')}, ` +
          `synchronous_standby_names ${synchronousStandbyNames}; monitor ${ha.monitorUrl} (state in ${ha.dir})`,
      );
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

    // Payloads are sealed here as in production; the UI reads them through a codec server of the stack's.
    const payload = stackPayloadCodec(config, stateDir);
    const withUi = !config.TEMPORAL_ADDRESS && !opts.ephemeralTemporal;
    const uiPort = withUi ? await preferredPort(8233) : undefined;
    let codecServer: Stack['codecServer'];
    const codec = codecOf(payload.setting);
    if (codec && uiPort) {
      const uiOrigins = [`http://127.0.0.1:${uiPort}`, `http://localhost:${uiPort}`];
      const token = config.SAGAFLOW_CODEC_TOKEN ?? keptSecret(stateDir, 'codec-token', () => randomBytes(32).toString('base64url'));
      const server = await startCodecServer({
        codec,
        token,
        port: await preferredPort(config.SAGAFLOW_CODEC_PORT),
        corsOrigins: uiOrigins,
        // The UI cannot send a token; on this machine, its own origin needs none.
        localOriginsWithoutToken: uiOrigins,
        log: (l) => {
          if (l.status !== 200) log(`codec server: ${JSON.stringify(l)}`);
        },
      });
      stops.push(server.close);
      codecServer = { url: server.url, token };
      log(`codec server: ${server.url} (the UI decodes payloads through it)`);
    }

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
            port: uiPort,
            codecEndpoint: codecServer?.url,
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
            dbFilename: path.join(ha?.dir ?? stateDir, 'temporal.sqlite'),
            ui: true,
            port: await preferredPort(7233),
            uiPort,
            uiCodecEndpoint: codecServer?.url,
            log,
          };
      let server = await startTemporalDevServer(devOptions);
      stops.push(() => server.stop());
      temporal = server;
      // A restart takes the same port, UI port and SQLite file: running sagas carry on.
      const port = Number(server.address.split(':').pop());
      const startedUiPort = server.uiUrl ? Number(new URL(server.uiUrl).port) : undefined;
      const metricsPort = server.metricsUrl ? Number(new URL(server.metricsUrl).port) : undefined;
      temporalPart = {
        restart: async () => {
          server = await startTemporalDevServer({ ...devOptions, port, uiPort: startedUiPort, metricsPort });
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
      // Each pg_autoctl run as a service manager keeps it: one that died is started again, and rejoins.
      ...(ha ? [ha.monitor, ...ha.nodes] : []).map((n) => ({
        name: `pg_auto_failover ${n.name}`,
        probe: async () => {
          if (!n.running) throw new Error(`pg_autoctl run is not running (${n.exit() ?? 'never started'})`);
        },
        restart: () => ha!.start(n),
        exit: () => n.exit(),
      })),
      { name: 'Temporal', probe: () => tcpProbe(temporal.address), ...temporalPart },
      { name: 'NATS', probe: () => tcpProbe(natsAddress), ...natsPart },
    ];
    return {
      databaseUrl,
      db,
      temporal,
      paymentProviderUrl,
      carrierUrl,
      natsUrl,
      natsReplicas,
      webhookSecretsKey: devSecretsKey(config, stateDir),
      payloadEnv: payload.env,
      dataConverter: dataConverterOf(payload.setting),
      codecServer,
      parts,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The dev stack's key for webhook secrets: made once, kept (mode 600) beside its other state. */
function devSecretsKey(config: Config, stateDir: string): string {
  if (config.WEBHOOK_SECRETS_KEY) return config.WEBHOOK_SECRETS_KEY;
  return keptSecret(stateDir, 'webhook-secrets.key', () => randomBytes(32).toString('base64'));
}

/** A secret of the dev stack's: made once, kept (mode 600) in the state directory, so a restart keeps it. */
function keptSecret(stateDir: string, name: string, make: () => string): string {
  const file = path.join(stateDir, name);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(stateDir, { recursive: true });
    fs.writeFileSync(file, `${make()}\n`, { mode: 0o600 });
  }
  return fs.readFileSync(file, 'utf8').trim();
}

/**
 * The stack's payload encryption: what the environment sets (keys, a keys file, or off), else a
 * key made once in the state directory, named by SAGAFLOW_PAYLOAD_KEYS_FILE: sagas kept in the
 * stack's Temporal across restarts stay readable, and no key is printed.
 */
function stackPayloadCodec(config: Config, stateDir: string): { setting: PayloadCodecSetting; env: Record<string, string> } {
  const given: Record<string, string> | undefined = config.SAGAFLOW_PAYLOAD_KEYS
    ? { SAGAFLOW_PAYLOAD_KEYS: config.SAGAFLOW_PAYLOAD_KEYS }
    : config.SAGAFLOW_PAYLOAD_KEYS_FILE
      ? { SAGAFLOW_PAYLOAD_KEYS_FILE: path.resolve(config.SAGAFLOW_PAYLOAD_KEYS_FILE) }
      : config.SAGAFLOW_PAYLOAD_CODEC === 'off'
        ? { SAGAFLOW_PAYLOAD_CODEC: 'off' }
        : undefined;
  if (given) return { setting: payloadCodecSetting(config), env: given };
  const file = path.join(stateDir, 'payload-keys');
  keptSecret(stateDir, 'payload-keys', () => `dev-${randomBytes(3).toString('hex')}:${randomBytes(32).toString('base64')}`);
  return { setting: payloadCodecSetting({ ...config, SAGAFLOW_PAYLOAD_KEYS_FILE: file }), env: { SAGAFLOW_PAYLOAD_KEYS_FILE: file } };
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
