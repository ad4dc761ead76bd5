import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { Client, Connection } from '@temporalio/client';
import { Pool } from 'pg';
import { migrate } from '../../src/db/migrate';
import { ensureInboxTopology } from '@sagaflow/toolkit/inbox';
import { orderIntakeTopology } from '../../src/orders/intake';
import { freePort, freeStablePort, waitFor } from '../../src/ports';
import { findNatsServer } from '../nats';
import { startPostgresHa, type PostgresHa } from '../postgres-ha';
import { createPool } from '../../src/db/pool';
import { findBuiltTemporalCli } from '../temporal';
import { CLUSTER_PG_MAX_CONNECTIONS, ensureServerTools, startTemporalCluster, type ClusterHost, type TemporalCluster } from '../temporal-cluster';
import { SAGA_SEARCH_ATTRIBUTES } from '../../workflows/order/search-attributes';
import { QUEUE_ROLES } from '../../workflows/order/queues';
import { ManagedProcess, pidAlive, type ExitInfo } from './processes';
import { clientConnectionOptions } from '../../src/temporal-connect';
import { EVENTS_SEEN_DDL, ORDER_STREAM_DUPLICATE_WINDOW_MS } from './doors';
import { WebhookReceiver } from './webhook-receiver';
import { EncryptionCodec } from '../../src/codec/encryption-codec';
import { parsePayloadKeys } from '../../src/codec/keys';

/** The application name of the driver's own PostgreSQL connections, which the terminator spares. */
export const CHAOS_APPLICATION_NAME = 'sagaflow-chaos';

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const REPO_ROOT = path.resolve(__dirname, '../..');
const NAMESPACE = 'default';
const TASK_QUEUE = 'sagaflow';

export interface CrashRecord {
  /** api, services, pool, temporal, worker, nats, intake, relay or consumers. */
  process: string;
  pid: number;
  code: number | null;
  signal: string | null;
  /** False: it died while starting (e.g. its migration met a database that was down). */
  wasReady: boolean;
  uptimeMs: number;
  atMs: number;
  /** The last lines it wrote, to tell what killed it. */
  lastOutput?: string;
  /** The error line among them (`Error: Connection terminated unexpectedly`), if there is one. */
  headline?: string;
}

export interface StackOptions {
  dir: string;
  workers: number;
  /** The provider/carrier call timeout the workers use; latency faults go past it. */
  providerTimeoutMs: number;
  shutdownGraceMs: number;
  /** Use this workflow bundle instead of building one into the run's directory. */
  workflowBundle?: string;
  log: (m: string) => void;
  /** Milliseconds since the run began, for crash records. */
  clock: () => number;
  /** Aborts the start-up between its steps (Ctrl-C, the deadline). */
  signal?: AbortSignal;
  /** 'cluster': a self-hosted Temporal cluster on the stack's PostgreSQL, whose hosts the faults kill. */
  temporal?: 'dev' | 'cluster';
  /**
   * 'ha': sagaflow's database as a primary with a synchronous standby under pg_auto_failover
   * (dev/postgres-ha.ts), reached through a multi-host URL; its restarts become kills of the
   * primary (a failover) and of the standby.
   */
  postgres?: 'embedded' | 'ha';
  /**
   * The stream doors (true by default): a nats-server with JetStream, the intake, the relay
   * (sending webhooks), the event consumers and a webhook receiver.
   */
  streams?: boolean;
}

/** Waits between a webhook delivery's attempts in the soak: seconds, not the production schedule's hours. */
export const CHAOS_WEBHOOK_RETRY_SCHEDULE_MS = [1_000, 2_000, 4_000, 8_000, 15_000, 15_000, 15_000, 15_000, 15_000, 15_000, 15_000, 15_000];

/** What the consumer process said of each delivery, and the intake of each message, by outcome. */
export interface DoorCounters {
  /** The counting consumer: new, duplicate, retry, dead-letter. */
  counter: Record<string, number>;
  /** The intake: new, duplicate, retry, dead-letter. */
  intake: Record<string, number>;
}

interface WorkerInfo {
  pid: number;
  startedAt: number;
  ready: boolean;
}

/**
 * A whole sagaflow deployment the chaos driver owns and can kill piece by
 * piece: an embedded PostgreSQL and a Temporal dev server (on a SQLite file)
 * that it restarts in place, and the services, the API and a worker pool as
 * child processes; with the stream doors, a nats-server (JetStream, its store in
 * the run's directory, restarted on the same port), the intake, the relay (which
 * sends the webhooks) and the event consumers as child processes too, and a
 * webhook receiver in the driver's own process. Every child is restarted when it
 * dies on its own (and the death recorded as a crash); the pool restarts its own
 * workers.
 */
export class ChaosStack {
  readonly logDir: string;
  readonly pgDataDir: string;
  readonly temporalDb: string;
  /** The embedded PostgreSQL, in a process of its own (dev/chaos/postgres-process.ts); absent in HA mode. */
  postgres!: ManagedProcess;
  /** The pg_auto_failover formation in HA mode. */
  ha: PostgresHa | undefined;
  pgPort = 0;
  databaseUrl = '';
  temporalAddress = '';
  apiUrl = '';
  providerUrl = '';
  carrierUrl = '';
  /** The driver's own pool (application_name sagaflow-chaos): never terminated by the faults. */
  db!: Pool;
  temporalConnection: Connection | undefined;
  temporalClient!: Client;
  /** The dev server; absent in cluster mode. */
  temporal: ManagedProcess | undefined;
  /** The self-hosted cluster in cluster mode. */
  cluster: TemporalCluster | undefined;
  services!: ManagedProcess;
  api!: ManagedProcess;
  pool!: ManagedProcess;
  /** The stream doors (absent with streams: false). */
  nats: ManagedProcess | undefined;
  natsUrl = '';
  /** The driver's own NATS connection: publishes the stream's orders, reads the streams for the audit. */
  nc: NatsConnection | undefined;
  intake: ManagedProcess | undefined;
  relay: ManagedProcess | undefined;
  consumers: ManagedProcess | undefined;
  receiver: WebhookReceiver | undefined;
  /** WEBHOOK_SECRETS_KEY of the API and the relay. */
  readonly webhookKey = randomBytes(32).toString('base64');
  /** Every saga of the soak is sealed with a key of its own, as in production. */
  readonly payloadKeys = `chaos:${randomBytes(32).toString('base64')}`;
  readonly doorCounters: DoorCounters = { counter: {}, intake: {} };
  readonly crashes: CrashRecord[] = [];
  /** Notes on things that went wrong that are not crashes: a worker that did not drain, a failed restart. */
  readonly notes: string[] = [];
  readonly workers = new Map<number, WorkerInfo>();
  /** Worker pids we signalled, and with what. */
  private readonly signalled = new Map<number, NodeJS.Signals>();
  private stopping = false;
  /** The pool's recent lines that are not routine logs (stack traces, errors): a worker's last words. */
  private readonly poolTail: string[] = [];
  private readonly restarting = new Map<ManagedProcess, Promise<void>>();
  private env: NodeJS.ProcessEnv = {};

  private constructor(readonly opts: StackOptions) {
    this.logDir = path.join(opts.dir, 'logs');
    this.pgDataDir = path.join(opts.dir, 'pg');
    this.temporalDb = path.join(opts.dir, 'temporal', 'temporal.sqlite');
  }

  static async start(opts: StackOptions): Promise<ChaosStack> {
    const stack = new ChaosStack(opts);
    try {
      await stack.bringUp();
      return stack;
    } catch (err) {
      await stack.stop();
      throw err;
    }
  }

  private async bringUp(): Promise<void> {
    const { log } = this.opts;
    const step = () => {
      if (this.opts.signal?.aborted) throw new Error('start-up aborted (Ctrl-C or the deadline)');
    };
    fs.mkdirSync(this.logDir, { recursive: true });
    fs.mkdirSync(path.dirname(this.temporalDb), { recursive: true });

    if (this.opts.postgres === 'ha') {
      if (this.opts.temporal === 'cluster') throw new Error('PostgreSQL HA runs with the Temporal dev server, not a cluster');
      this.ha = await startPostgresHa({ dir: path.join(this.opts.dir, 'pg-ha'), log });
      const { primary, standbys } = await this.ha.waitUntilReplicating();
      log(`PostgreSQL: pg_auto_failover, primary ${primary.name}, synchronous standby ${standbys.map((n) => n.name).join(', ')}; ${this.ha.url}`);
      this.databaseUrl = this.ha.url;
      await migrate(this.databaseUrl);
      this.db = createPool({ connectionString: `${this.databaseUrl}&application_name=${CHAOS_APPLICATION_NAME}`, max: 4 });
    } else {
      this.pgPort = await freeStablePort();
      log(`PostgreSQL: embedded on 127.0.0.1:${this.pgPort}, data in ${this.pgDataDir}`);
      let url = '';
      const pgArgs = [this.pgDataDir, String(this.pgPort), ...(this.opts.temporal === 'cluster' ? [String(CLUSTER_PG_MAX_CONNECTIONS)] : [])];
      this.postgres = this.tsProcess('postgres', 'dev/chaos/postgres-process.ts', pgArgs, /"msg":"postgres ready"/, (line) => {
        const m = /"msg":"postgres ready","url":"([^"]+)"/.exec(line);
        if (m?.[1]) url = m[1];
      });
      this.postgres.onExit = (info) => this.onExit(this.postgres, info);
      await this.postgres.start(120_000);
      this.databaseUrl = url;
      await migrate(this.databaseUrl);
      step();
      this.db = new Pool({ connectionString: this.databaseUrl, application_name: CHAOS_APPLICATION_NAME, max: 4 });
      this.db.on('error', () => undefined);
    }

    step();
    const cli = findBuiltTemporalCli();
    if (!cli) throw new Error('no Temporal CLI (TEMPORAL_CLI_PATH, PATH or the cache): run `npm run temporal:install` first');
    if (this.opts.temporal === 'cluster') {
      const tools = await ensureServerTools(log);
      if (!tools) throw new Error('no Temporal server build (needs Go): run `npm run tools:install -- --only cluster` first');
      const pg = new URL(this.databaseUrl);
      this.cluster = await startTemporalCluster(tools, {
        pg: { host: pg.hostname, port: Number(pg.port), user: decodeURIComponent(pg.username), password: decodeURIComponent(pg.password) },
        database: 'temporal',
        namespace: NAMESPACE,
        stateDir: path.join(this.opts.dir, 'cluster'),
        cli: cli.path,
        // The driver's pool, the API, the services and the pool's workers at their default pool size.
        otherConnections: [
          { who: 'the soak (driver, API, services, workers)', processes: 3 + this.opts.workers, each: 10 },
          ...(this.opts.streams !== false
            ? [
                { who: 'the intake', processes: 1, each: 10 },
                { who: 'the relay and the event consumers', processes: 2, each: 4 },
              ]
            : []),
        ],
        log,
      });
      this.temporalAddress = this.cluster.address;
      this.watchClusterHosts(this.cluster);
      log(`Temporal: a cluster of ${this.cluster.hosts.length} hosts behind ${this.temporalAddress}`);
    } else {
      const temporalPort = await freeStablePort();
      this.temporalAddress = `127.0.0.1:${temporalPort}`;
      const temporalArgs = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(temporalPort),
        '--namespace', NAMESPACE, '--headless', '--log-level', 'warn', '--db-filename', this.temporalDb];
      for (const key of SAGA_SEARCH_ATTRIBUTES) temporalArgs.push('--search-attribute', `${key.name}=Keyword`);
      const temporal = this.process('temporal', cli.path, temporalArgs, {});
      this.temporal = temporal;
      temporal.onExit = (info) => this.onExit(temporal, info);
      log(`Temporal: dev server ${cli.path} on ${this.temporalAddress}, state in ${this.temporalDb}`);
      await this.startTemporal(temporal);
    }
    this.temporalConnection = await Connection.connect(clientConnectionOptions({ address: this.temporalAddress }));
    this.temporalClient = new Client({
      connection: this.temporalConnection,
      namespace: NAMESPACE,
      dataConverter: { payloadCodecs: [new EncryptionCodec(parsePayloadKeys(this.payloadKeys))] },
    });

    step();
    const bundle = this.opts.workflowBundle ?? (await this.buildBundle());
    // Ports the API and the services bind again at every restart: below the ephemeral range.
    const ports = new Set<number>();
    const [apiPort, providerPort, carrierPort] = [await freeStablePort(ports), await freeStablePort(ports), await freeStablePort(ports)];
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    this.providerUrl = `http://127.0.0.1:${providerPort}`;
    this.carrierUrl = `http://127.0.0.1:${carrierPort}`;
    this.env = childEnv({
      DATABASE_URL: this.databaseUrl,
      TEMPORAL_ADDRESS: this.temporalAddress,
      TEMPORAL_NAMESPACE: NAMESPACE,
      TEMPORAL_TASK_QUEUE: TASK_QUEUE,
      SAGAFLOW_PAYLOAD_KEYS: this.payloadKeys,
      PAYMENT_PROVIDER_URL: this.providerUrl,
      CARRIER_URL: this.carrierUrl,
      SERVICES_HOST: '127.0.0.1',
      PAYMENT_PROVIDER_PORT: String(providerPort),
      CARRIER_PORT: String(carrierPort),
      API_HOST: '127.0.0.1',
      API_PORT: String(apiPort),
      METRICS_HOST: '127.0.0.1',
      METRICS_PORT: '0',
      PROVIDER_TIMEOUT_MS: String(this.opts.providerTimeoutMs),
      SHUTDOWN_GRACE_MS: String(this.opts.shutdownGraceMs),
      SAGAFLOW_WORKFLOW_BUNDLE: bundle,
      SAGAFLOW_SEARCH_ATTRIBUTES: 'true',
      SAGAFLOW_STATE_DIR: path.join(this.opts.dir, 'state'),
      LOG_LEVEL: 'info',
    });

    if (this.opts.streams !== false) {
      step();
      await this.startNats();
      Object.assign(this.env, {
        NATS_URL: this.natsUrl,
        WEBHOOK_SECRETS_KEY: this.webhookKey,
        WEBHOOK_ALLOW_PRIVATE_URLS: 'true',
        WEBHOOK_RETRY_SCHEDULE_MS: CHAOS_WEBHOOK_RETRY_SCHEDULE_MS.join(','),
      });
    }

    this.services = this.tsProcess('services', 'bin/services.ts', [], /"msg":"services listening"/);
    this.api = this.tsProcess('api', 'bin/api.ts', [], /"msg":"api ready"/);
    const poolArgs = [`workflows=${this.opts.workers}`, '--queues', QUEUE_ROLES.join(',')];
    this.pool = this.tsProcess('pool', 'bin/pool.ts', poolArgs, /"msg":"pool up"/, (line) => this.onPoolLine(line));
    for (const p of [this.services, this.api, this.pool]) p.onExit = (info) => this.onExit(p, info);
    if (this.opts.streams !== false) {
      // The intake at debug: its line per message says whether the inbox found it new or a duplicate.
      this.intake = this.tsProcess('intake', 'bin/intake.ts', [], /"msg":"intake consuming"/, (line) => this.onDoorLine('intake', line), { LOG_LEVEL: 'debug' });
      this.relay = this.tsProcess('relay', 'bin/relay.ts', [], /"msg":"relay publishing"/);
      this.consumers = this.tsProcess('consumers', 'dev/chaos/event-consumers.ts', [], /"msg":"consumers running"/, (line) => this.onDoorLine('counter', line), {}, [
        // The example projection imports sagaflow/inbox: this repository's source, as in its tests.
        '--conditions=sagaflow-source',
      ]);
      for (const p of [this.intake, this.relay, this.consumers]) p.onExit = (info) => this.onExit(p, info);
    }

    step();
    await this.services.start();
    log(`services: payment provider ${this.providerUrl}, carrier ${this.carrierUrl}`);
    step();
    await Promise.all([this.api.start(), this.pool.start()]);
    log(`API: ${this.apiUrl}; worker pool: ${this.opts.workers} processes, each polling every queue`);
    step();
    if (this.intake && this.relay && this.consumers) {
      await this.db.query(EVENTS_SEEN_DDL);
      await Promise.all([this.intake.start(), this.relay.start(), this.consumers.start()]);
      this.receiver = new WebhookReceiver(path.join(this.logDir, 'webhook-receiver.jsonl'));
      await this.receiver.start();
      log(`stream doors: the intake, the relay (sending webhooks) and the event consumers; a webhook receiver at ${this.receiver.url('/')}`);
    }
    step();
    for (const until = Date.now() + 90_000; ; ) {
      step();
      const ready = [...this.workers.values()].filter((w) => w.ready).length;
      if (ready >= this.opts.workers) break;
      if (Date.now() > until) throw new Error(`only ${ready}/${this.opts.workers} workers ready after 90 s; see ${this.pool.spec.logFile}`);
      await sleep(200);
    }
  }

  /**
   * A nats-server with JetStream on a fixed port and a store in the run's directory, so a
   * restart (SIGKILL, then a start on the same port and store) keeps the URL and the streams;
   * then the order intake's streams and consumer, with the soak's short duplicate window.
   */
  private async startNats(): Promise<void> {
    const bin = findNatsServer();
    if (!bin) throw new Error('nats-server not found: set NATS_SERVER_PATH, or run `npm run tools:install` (installs Debian\'s nats-server)');
    const port = await freePort();
    const storeDir = path.join(this.opts.dir, 'nats');
    fs.mkdirSync(storeDir, { recursive: true });
    this.natsUrl = `nats://127.0.0.1:${port}`;
    const nats = this.process('nats', bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], {}, /Server is ready/);
    this.nats = nats;
    nats.onExit = (info) => this.onExit(nats, info);
    await nats.start(30_000);
    this.opts.log(`NATS: ${bin} at ${this.natsUrl}, JetStream store in ${storeDir}`);
    this.nc = await natsConnect({ servers: this.natsUrl, name: 'sagaflow-chaos', maxReconnectAttempts: -1, reconnectTimeWait: 250, waitOnFirstConnect: true });
    await ensureInboxTopology(this.nc, orderIntakeTopology({ duplicateWindowMs: ORDER_STREAM_DUPLICATE_WINDOW_MS }));
  }

  /** Counts the intake's and the counting consumer's outcomes from their lines. */
  private onDoorLine(which: keyof DoorCounters, line: string): void {
    if (!line.startsWith('{')) return;
    let msg: { msg?: string; claim?: string; kind?: string };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    let key: string | undefined;
    if (which === 'counter' && msg.msg === 'event outcome') key = msg.kind === 'ack' ? (msg.claim ?? 'ack') : msg.kind;
    else if (which === 'intake' && msg.msg === 'message processed') key = msg.claim ?? 'ack';
    else if (which === 'intake' && msg.msg === 'message to be redelivered') key = 'retry';
    else if (which === 'intake' && msg.msg === 'message dead-lettered') key = 'dead-letter';
    if (!key) return;
    const counts = this.doorCounters[which];
    counts[key] = (counts[key] ?? 0) + 1;
  }

  private async startTemporal(temporal: ManagedProcess): Promise<void> {
    await temporal.start();
    await waitFor('Temporal dev server', 60_000, async () => {
      if (!temporal.running) throw new Error('the dev server exited; see temporal.log');
      const conn = await Connection.connect({ address: this.temporalAddress, connectTimeout: 1000 });
      try {
        await conn.workflowService.describeNamespace({ namespace: NAMESPACE });
      } finally {
        await conn.close();
      }
    });
  }

  private async buildBundle(): Promise<string> {
    const out = path.join(this.opts.dir, 'workflow-bundle.js');
    this.opts.log('building the workflow bundle (workers then start in about half a second)');
    const builder = this.tsProcess('bundle', 'bin/build-bundle.ts', [out], undefined);
    await builder.start();
    const exit = await builder.exited();
    if (exit && exit.code !== 0) throw new Error(`building the workflow bundle failed; see ${builder.spec.logFile}`);
    return out;
  }

  private process(name: string, command: string, args: string[], env: NodeJS.ProcessEnv, readyLine?: RegExp, onLine?: (l: string) => void): ManagedProcess {
    return new ManagedProcess({
      name,
      command,
      args,
      env: { ...childEnv({}), ...env },
      cwd: REPO_ROOT,
      logFile: path.join(this.logDir, `${name}.log`),
      readyLine,
      onLine,
    });
  }

  private tsProcess(
    name: string,
    file: string,
    args: string[],
    readyLine: RegExp | undefined,
    onLine?: (l: string) => void,
    env: NodeJS.ProcessEnv = {},
    nodeArgs: string[] = [],
  ): ManagedProcess {
    const argv = [...nodeArgs, '-r', 'ts-node/register/transpile-only', path.join(REPO_ROOT, file), ...args];
    return this.process(name, process.execPath, argv, { ...this.env, ...env }, readyLine, onLine);
  }

  private onPoolLine(line: string): void {
    if (!line.startsWith('{') || /"level":"(error|warn)"/.test(line) && !/step attempt failed|Activity failed/.test(line)) {
      this.poolTail.push(line.replace(ANSI, '').slice(0, 400));
      if (this.poolTail.length > 40) this.poolTail.shift();
    }
    if (!line.startsWith('{')) return;
    let msg: { component?: string; msg?: string; pid?: number; code?: number | null; signal?: string | null };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    const pid = msg.pid;
    if (typeof pid !== 'number') return;
    if (msg.component === 'pool' && msg.msg === 'worker started') {
      this.workers.set(pid, { pid, startedAt: Date.now(), ready: false });
    } else if (msg.msg === 'worker ready') {
      const w = this.workers.get(pid);
      if (w) w.ready = true;
      else this.workers.set(pid, { pid, startedAt: Date.now(), ready: true });
    } else if (msg.component === 'pool' && msg.msg === 'worker exited') {
      const info = this.workers.get(pid);
      this.workers.delete(pid);
      const sent = this.signalled.get(pid);
      this.signalled.delete(pid);
      const lastWords = this.poolTail.splice(0).join('\n');
      if (this.stopping) return;
      if (sent === 'SIGTERM' && msg.code !== 0) {
        this.notes.push(`worker ${pid} did not drain on SIGTERM: exit code ${msg.code}, signal ${msg.signal} (see pool.log)`);
      } else if (!sent) {
        this.crashes.push({
          process: 'worker',
          pid,
          code: msg.code ?? null,
          signal: msg.signal ?? null,
          wasReady: info?.ready ?? false,
          uptimeMs: info ? Date.now() - info.startedAt : 0,
          atMs: this.opts.clock(),
          lastOutput: `${lastWords}\n(the pool's recent non-routine output; workers share pool.log)`,
          headline: crashHeadline(lastWords),
        });
      }
    }
  }

  /** The api, services, pool and Temporal are restarted when they die on their own. */
  private onExit(p: ManagedProcess, info: ExitInfo): void {
    // A dead pool's workers would poll on as orphans next to the new pool's: they go with it.
    if (p === this.pool) {
      try {
        process.kill(-info.pid, 'SIGKILL');
      } catch {
        /* none left */
      }
      this.workers.clear();
    }
    if (info.expected || this.stopping) return;
    this.crashes.push({
      process: info.name,
      pid: info.pid,
      code: info.code,
      signal: info.signal,
      wasReady: info.wasReady,
      uptimeMs: info.uptimeMs,
      atMs: this.opts.clock(),
      lastOutput: tail(p.spec.logFile, 4000),
    });
    const last = this.crashes[this.crashes.length - 1]!;
    last.headline = crashHeadline(last.lastOutput ?? '');
    this.opts.log(`${info.name} (pid ${info.pid}) died on its own: code ${info.code}, signal ${info.signal}; restarting it`);
    void this.ensureUp(p, 1000);
  }

  /** Starts p (after delayMs) until it is ready; one restart loop per process at a time. */
  ensureUp(p: ManagedProcess, delayMs: number): Promise<void> {
    const current = this.restarting.get(p);
    if (current) return current;
    const loop = (async () => {
      let delay = delayMs;
      while (!this.stopping) {
        await sleep(delay);
        if (this.stopping || p.running) return;
        try {
          if (p === this.temporal) await this.startTemporal(p);
          else await p.start(p === this.postgres ? 120_000 : 60_000);
          return;
        } catch (err) {
          this.notes.push(`restarting ${p.spec.name} failed at ${(this.opts.clock() / 1000).toFixed(1)} s: ${(err as Error).message.split('\n')[0]}`);
          delay = Math.min(Math.max(delay * 2, 500), 8000);
        }
      }
    })().finally(() => this.restarting.delete(p));
    this.restarting.set(p, loop);
    return loop;
  }

  /** Kills p with sig, waits for it to go, pauses, and starts it again. */
  async killAndRestart(p: ManagedProcess, sig: NodeJS.Signals, pauseMs: number): Promise<boolean> {
    if (!p.running) return false;
    const exited = p.exited();
    if (!p.signal(sig)) return false;
    const timer = setTimeout(() => p.killGroupNow('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
    await this.ensureUp(p, pauseMs);
    return true;
  }

  /** Cluster hosts that are down (killed and not yet started again). */
  private readonly hostsDown = new Set<ClusterHost>();

  /**
   * SIGKILLs one running cluster host of `service`, waits `pauseMs`, starts it again with its
   * config and ports, and waits until it has rejoined the cluster. Answers which host, or false.
   */
  async killClusterHost(service: ClusterHost['service'], pick: <T>(xs: readonly T[]) => T, pauseMs: number): Promise<boolean | string> {
    const cluster = this.cluster;
    if (!cluster) return false;
    const candidates = cluster.hosts.filter((h) => h.service === service && !this.hostsDown.has(h));
    if (!candidates.length) return false;
    const host = pick(candidates);
    this.hostsDown.add(host);
    try {
      await cluster.kill(host);
      await sleep(pauseMs);
      const since = Date.now();
      await cluster.restart(host);
      await cluster.joined(host, since, 90_000).catch((err: Error) => this.notes.push(`${service}#${host.index} did not rejoin: ${err.message}`));
    } finally {
      this.hostsDown.delete(host);
    }
    return `${service}#${host.index}`;
  }

  private hostWatch: NodeJS.Timeout | undefined;

  /** A host that dies on its own (not killed by a fault) is a crash: recorded, and started again. */
  private watchClusterHosts(cluster: TemporalCluster): void {
    const restarting = new Set<ClusterHost>();
    this.hostWatch = setInterval(() => {
      for (const h of cluster.hosts) {
        const p = h.process;
        if (!p || p.exitCode === null && p.signalCode === null) continue;
        if (this.stopping || this.hostsDown.has(h) || restarting.has(h)) continue;
        this.crashes.push({
          process: `temporal ${h.service}#${h.index}`,
          pid: p.pid ?? 0,
          code: p.exitCode,
          signal: p.signalCode,
          wasReady: true,
          uptimeMs: 0,
          atMs: this.opts.clock(),
          lastOutput: tail(path.join(this.opts.dir, 'cluster', `${h.service}-${h.index}`, 'server.log'), 2000),
          // A host that fails to start ends its log with a stack trace longer than any tail: the reason is above it.
          headline: hostFailure(tail(path.join(this.opts.dir, 'cluster', `${h.service}-${h.index}`, 'server.log'), 64_000) ?? ''),
        });
        this.opts.log(`cluster host ${h.service}#${h.index} died on its own (code ${p.exitCode}, signal ${p.signalCode}); starting it again`);
        restarting.add(h);
        void cluster.restart(h).finally(() => restarting.delete(h));
      }
    }, 2000);
  }

  /** After the faults: every cluster host running again. */
  async healCluster(): Promise<void> {
    const cluster = this.cluster;
    if (!cluster) return;
    for (const h of cluster.hosts) {
      if (h.process && h.process.exitCode === null && h.process.signalCode === null) continue;
      this.opts.log(`cluster host ${h.service}#${h.index} is down; starting it again`);
      await cluster.restart(h);
    }
  }

  /** A ready worker up for at least minUptimeMs and not already signalled, or undefined. */
  pickWorker(pick: <T>(xs: readonly T[]) => T, minUptimeMs: number): number | undefined {
    const now = Date.now();
    const candidates = [...this.workers.values()].filter(
      (w) => w.ready && now - w.startedAt >= minUptimeMs && !this.signalled.has(w.pid) && pidAlive(w.pid),
    );
    return candidates.length ? pick(candidates).pid : undefined;
  }

  signalWorker(pid: number, sig: NodeJS.Signals): boolean {
    this.signalled.set(pid, sig);
    try {
      process.kill(pid, sig);
      return true;
    } catch {
      this.signalled.delete(pid);
      return false;
    }
  }

  /** Terminates every PostgreSQL backend of the application database but the driver's own. */
  async terminateConnections(): Promise<number> {
    const res = await this.db.query<{ n: number }>(
      `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
          AND application_name IS DISTINCT FROM $1`,
      [CHAOS_APPLICATION_NAME],
    );
    return res.rows[0]?.n ?? 0;
  }

  /**
   * HA mode: SIGKILLs the keeper and PostgreSQL of the primary (or of the standby), waits for the
   * monitor to promote the other node (or to let the primary go on alone), pauses, and starts the
   * killed node again, which rejoins as a standby. Answers what happened, with the time it took.
   */
  async killPostgresNode(role: 'primary' | 'standby', pauseMs: number): Promise<boolean | string> {
    const ha = this.ha;
    if (!ha) return false;
    const primary = await ha.primary().catch(() => undefined);
    const victim = role === 'primary' ? primary : ha.nodes.find((n) => n !== primary && n.running);
    if (!primary || !victim || ha.nodes.some((n) => !n.running)) return false;
    const killedAt = Date.now();
    await ha.kill(victim);
    let detail: string;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const states = await ha.state().catch(() => []);
      const taker = states.find((s) => s.name !== victim.name && ['primary', 'wait_primary'].includes(s.reported) && s.assigned === s.reported);
      if (taker && (role === 'standby' ? taker.reported === 'wait_primary' : true)) {
        detail = role === 'primary'
          ? `${victim.name} killed, ${taker.name} promoted in ${((Date.now() - killedAt) / 1000).toFixed(1)} s`
          : `${victim.name} killed, ${taker.name} alone in ${((Date.now() - killedAt) / 1000).toFixed(1)} s`;
        break;
      }
      if (Date.now() > deadline) {
        detail = `${victim.name} killed; no ${role === 'primary' ? 'failover' : 'primary going on alone'} within 60 s`;
        this.notes.push(`PostgreSQL HA: ${detail}: ${JSON.stringify(states)}`);
        break;
      }
      await sleep(100);
    }
    await sleep(pauseMs);
    await ha.start(victim);
    return detail;
  }

  /** After the faults: every HA node's keeper running again (each rejoins on its own). */
  async healPostgresHa(): Promise<void> {
    for (const n of this.ha?.nodes ?? []) if (!n.running) await this.ha!.start(n);
  }

  /** A fast shutdown of PostgreSQL, a pause, and a start on the same data directory and port. */
  async restartPostgres(pauseMs: number): Promise<boolean> {
    if (!this.postgres.running) return false;
    await this.postgres.stop(30_000);
    await this.ensureUp(this.postgres, pauseMs);
    return true;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.hostWatch);
    const procs = [this.pool, this.api, this.services, this.intake, this.relay, this.consumers].filter((p): p is ManagedProcess => p !== undefined);
    await Promise.all(procs.map((p) => p.stop(p === this.pool ? this.opts.shutdownGraceMs + 5000 : 5000).catch(() => undefined)));
    await this.receiver?.stop().catch(() => undefined);
    await this.nc?.close().catch(() => undefined);
    await this.nats?.stop(5000).catch(() => undefined);
    await this.temporalConnection?.close().catch(() => undefined);
    await this.temporal?.stop(5000).catch(() => undefined);
    await this.cluster?.stop().catch(() => undefined);
    await this.db?.end().catch(() => undefined);
    await this.postgres?.stop(30_000).catch(() => undefined);
    await this.ha?.stop().catch(() => undefined);
  }
}

/**
 * The environment of a child: the driver's own, minus every sagaflow and
 * Temporal setting it may carry (a test run's DATABASE_URL, a developer's
 * TEMPORAL_ADDRESS or tracing endpoint), plus the stack's.
 */
function childEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  const foreign =
    /^(TEMPORAL_|SAGAFLOW_|OTEL_|DATABASE_URL$|DATABASE_POOL_MAX$|PAYMENT_PROVIDER_|CARRIER_|API_|SERVICES_HOST$|METRICS_|PROVIDER_TIMEOUT_MS$|SHUTDOWN_GRACE_MS$|PAYMENTS_PER_SECOND$|IDEMPOTENCY_KEY_TTL_HOURS$|LOG_LEVEL$|NATS_|INTAKE_|INBOX_|OUTBOX_|WEBHOOK_)/;
  for (const [k, v] of Object.entries(process.env)) if (!foreign.test(k)) env[k] = v;
  return { ...env, ...vars };
}

/** The last line that names an error: `error: terminating connection...`, `TypeError: ...`, `Uncaught ...`. */
/** The last line of a Temporal host's log that says why it stopped (`Unable to start server. Error: ...`, a fatal or error entry). */
export function hostFailure(output: string): string | undefined {
  const lines = output.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (/Unable to|level=(ERROR|FATAL)|"level":"(error|fatal)"|^panic:/.test(line)) return line.slice(0, 600);
  }
  return undefined;
}

export function crashHeadline(output: string): string | undefined {
  const lines = output.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (/^([A-Za-z]*Error|error)(\s\[[^\]]*\])?:\s|^Uncaught|^Unhandled|unhandledRejection/.test(line)) return line.slice(0, 300);
  }
  return undefined;
}

function tail(file: string, bytes: number): string | undefined {
  try {
    const size = fs.statSync(file).size;
    const fd = fs.openSync(file, 'r');
    try {
      const len = Math.min(bytes, size);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}
