import { execFile, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Connection } from '@temporalio/client';
import { Client } from 'pg';
import { StartupError } from '../src/config';
import { describeBudget, planConnections, readConnectionLimits, type ConnectionClaim } from '../src/db/connection-budget';
import { PACKAGE_ROOT } from '../src/paths';
import { freeStablePort, waitFor } from '../src/ports';
import { SAGA_SEARCH_ATTRIBUTES } from '../workflows/order/search-attributes';
import { buildTemporalProgram, isExecutable } from './go-build';
import { startTcpBalancer, type TcpBalancer } from './tcp-balancer';
import { spawnTied } from '../src/tied-spawn';

const run = promisify(execFile);

/**
 * A self-hosted Temporal cluster on PostgreSQL, without Docker: the production
 * server built from its Go module, its schema applied with temporal-sql-tool,
 * and each service (frontend, history, matching, worker) as processes of its
 * own, several of each, finding each other through the cluster_membership table.
 */

/** The server inside the Temporal CLI the dev stack uses (pinned in tools/temporal/go.mod). */
export const TEMPORAL_SERVER_VERSION = 'v1.29.1';
const SERVER_MODULE = 'go.temporal.io/server';

export type ClusterService = 'frontend' | 'history' | 'matching' | 'worker';

export function serverCacheDir(): string {
  const base = process.env.SAGAFLOW_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'sagaflow');
  return path.join(base, `temporal-server-${TEMPORAL_SERVER_VERSION}`);
}

export interface ServerTools {
  server: string;
  sqlTool: string;
  /** schema/postgresql/v12 of the module: temporal/versioned and visibility/versioned. */
  schemaDir: string;
}

/** The server and temporal-sql-tool, built once from tools/temporal into the cache (with progress). */
export async function ensureServerTools(log: (m: string) => void): Promise<ServerTools | undefined> {
  const dir = serverCacheDir();
  const tools = { server: path.join(dir, 'server'), sqlTool: path.join(dir, 'sql'), schemaDir: path.join(dir, 'schema', 'postgresql', 'v12') };
  for (const [what, pkg, out] of [
    ['the Temporal server', 'cmd/server', tools.server],
    ['temporal-sql-tool', 'cmd/tools/sql', tools.sqlTool],
  ] as const) {
    if (isExecutable(out)) continue;
    const ok = await buildTemporalProgram({
      what,
      pkg: `${SERVER_MODULE}/${pkg}`,
      version: TEMPORAL_SERVER_VERSION,
      output: out,
      takes: 'seconds after the Temporal CLI, minutes without it',
      log,
    });
    if (!ok) return undefined;
  }
  if (!fs.existsSync(tools.schemaDir)) {
    // The versioned schema ships in the module, not in the binaries: keep a copy beside them.
    const { stdout } = await run('go', ['env', 'GOMODCACHE']);
    const from = path.join(stdout.trim(), `${SERVER_MODULE}@${TEMPORAL_SERVER_VERSION}`, 'schema', 'postgresql', 'v12');
    fs.mkdirSync(path.dirname(tools.schemaDir), { recursive: true });
    fs.cpSync(from, tools.schemaDir, { recursive: true });
    fs.chmodSync(tools.schemaDir, 0o755);
  }
  return tools;
}

export interface ClusterOptions {
  pg: { host: string; port: number; user: string; password: string };
  /** Temporal's database name (its visibility database is `<name>_visibility`); apart from sagaflow's. */
  database?: string;
  hosts?: Partial<Record<ClusterService, number>>;
  /** Connections per host to each datastore (CLUSTER_MAX_CONNS by default). */
  maxConns?: { default: number; visibility: number };
  /**
   * Connections the rest (sagaflow's processes) may open on the same PostgreSQL. The cluster does
   * not start unless its hosts' pools and these fit the server's max_connections.
   */
  otherConnections?: ConnectionClaim[];
  shards?: number;
  namespace?: string;
  /** The balancer's port (any free one when absent). */
  port?: number;
  /** Where per-host configs and logs go. */
  stateDir: string;
  /** A Temporal CLI, to register the namespace and the search attributes. */
  cli: string;
  log: (m: string) => void;
}

export interface ClusterHost {
  service: ClusterService;
  index: number;
  grpcPort: number;
  /** Where the host gossips with the others; the port it has in the cluster_membership table. */
  membershipPort: number;
  process?: ChildProcess;
}

export interface TemporalCluster {
  /**
   * The address clients and workers dial: a load balancer over every frontend, so losing
   * one frontend costs a reconnect, not an outage.
   */
  address: string;
  /** Every frontend, as host:port. */
  frontends: string[];
  balancer: TcpBalancer;
  namespace: string;
  hosts: ClusterHost[];
  /** SIGKILLs one host (a lost node). */
  kill(host: ClusterHost): Promise<void>;
  /** SIGTERMs one host and waits for it to exit (a host taken down for an upgrade). */
  terminate(host: ClusterHost): Promise<void>;
  /** Starts a stopped host again, with its config and ports. */
  restart(host: ClusterHost): Promise<void>;
  /**
   * Resolves once the host has (re)joined the cluster: its row in cluster_membership
   * started after `since` (ms since the epoch) and has a heartbeat.
   */
  joined(host: ClusterHost, since: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A free port below 32768, outside the range the OS hands out as the local port of
 * outgoing connections: a host restarted after a kill binds its ports again, and a port
 * from that range may by then be held by any connection on the machine, refusing the
 * restart for as long as it lives. (Temporal also stores membership ports in a
 * PostgreSQL smallint, cluster_membership.rpc_port.)
 */
const freeHostPort = (taken: Set<number>): Promise<number> => freeStablePort(taken);

const fill = (template: string, values: Record<string, string | number>) =>
  template.replace(/\{\{([A-Z_]+)\}\}/g, (_m, k: string) => {
    if (!(k in values)) throw new Error(`server.yaml.tmpl: no value for {{${k}}}`);
    return String(values[k]);
  });

/** Creates Temporal's two databases (if missing) and brings their schemas to the server's version. */
export async function setupClusterSchema(tools: ServerTools, o: Pick<ClusterOptions, 'pg' | 'database' | 'log'>): Promise<void> {
  const db = o.database ?? 'temporal';
  const base = ['--plugin', 'postgres12', '--ep', o.pg.host, '-p', String(o.pg.port), '-u', o.pg.user, '--pw', o.pg.password];
  for (const [name, schema] of [
    [db, 'temporal'],
    [`${db}_visibility`, 'visibility'],
  ] as const) {
    const tool = (...args: string[]) => run(tools.sqlTool, [...base, '--db', name, ...args]);
    await tool('create-database').catch((err: { stderr?: string }) => {
      if (!/already exists/.test(err.stderr ?? '')) throw err;
    });
    // setup-schema -v 0.0 makes the schema_version table once; update-schema then applies every version up to the module's.
    await tool('setup-schema', '-v', '0.0').catch((err: { stderr?: string }) => {
      if (!/already exists|schema_version/.test(err.stderr ?? '')) throw err;
    });
    await tool('update-schema', '-d', path.join(tools.schemaDir, schema, 'versioned'));
    o.log(`Temporal cluster: database ${name} at the ${TEMPORAL_SERVER_VERSION} schema`);
  }
}

/** Connections per host to Temporal's datastores: the persistence store and the visibility store. */
export const CLUSTER_MAX_CONNS = { default: 10, visibility: 4 } as const;

/** The cluster's hosts, grouped by service, each with up to `maxConns` connections to its two datastores. */
export function clusterConnectionClaims(
  counts: Record<ClusterService, number>,
  maxConns: { default: number; visibility: number } = CLUSTER_MAX_CONNS,
): ConnectionClaim[] {
  return (Object.entries(counts) as [ClusterService, number][])
    .filter(([, n]) => n > 0)
    .map(([service, n]) => ({ who: `Temporal ${service} hosts`, processes: n, each: maxConns.default + maxConns.visibility }));
}

/** Refuses to start hosts whose pools, with everything else on the server, would exceed max_connections. */
async function checkConnectionBudget(o: ClusterOptions, hosts: ConnectionClaim[]): Promise<void> {
  const admin = new Client({ host: o.pg.host, port: o.pg.port, user: o.pg.user, password: o.pg.password, database: 'postgres' });
  await admin.connect();
  let limits;
  try {
    limits = await readConnectionLimits(admin);
  } finally {
    await admin.end();
  }
  const budget = planConnections([...hosts, ...(o.otherConnections ?? [])], limits);
  if (!budget.fits) {
    throw new StartupError(
      `the Temporal cluster's hosts and the rest could open more connections than PostgreSQL allows:\n${describeBudget(budget)}\n` +
        `Raise max_connections (the dev stack starts its PostgreSQL with ${CLUSTER_PG_MAX_CONNECTIONS}) or lower the pools (docs/operations.md, "Connection budget").`,
    );
  }
  o.log(`connection budget: ${budget.needed} of ${budget.allowed} that PostgreSQL allows`);
}

/** max_connections of the PostgreSQL the dev stack embeds in cluster mode: room for the hosts and sagaflow. */
export const CLUSTER_PG_MAX_CONNECTIONS = 300;

/** Starts the cluster's hosts (2 frontends, 2 history, 2 matching and 1 worker by default) and registers the namespace. */
export async function startTemporalCluster(tools: ServerTools, o: ClusterOptions): Promise<TemporalCluster> {
  const counts: Record<ClusterService, number> = { frontend: 2, history: 2, matching: 2, worker: 1, ...o.hosts };
  const namespace = o.namespace ?? 'default';
  const template = fs.readFileSync(path.join(PACKAGE_ROOT, 'deploy', 'temporal', 'cluster', 'server.yaml.tmpl'), 'utf8');
  const maxConns = o.maxConns ?? CLUSTER_MAX_CONNS;
  await checkConnectionBudget(o, clusterConnectionClaims(counts, maxConns));
  fs.mkdirSync(o.stateDir, { recursive: true });
  const dynamicConfig = path.join(o.stateDir, 'dynamicconfig.yaml');
  fs.writeFileSync(dynamicConfig, 'system.forceSearchAttributesCacheRefreshOnRead:\n  - value: true\n    constraints: {}\n');
  await setupClusterSchema(tools, o);

  const hosts: ClusterHost[] = [];
  const hostPorts = new Set<number>();
  for (const service of ['frontend', 'history', 'matching', 'worker'] as const) {
    for (let index = 0; index < counts[service]; index++) {
      hosts.push({ service, index, grpcPort: await freeHostPort(hostPorts), membershipPort: await freeHostPort(hostPorts) });
    }
  }
  const frontends = hosts.filter((h) => h.service === 'frontend').map((h) => `127.0.0.1:${h.grpcPort}`);
  // The cluster's own address (clients, workers and its internal worker service) is the balancer's.
  const balancer = await startTcpBalancer({ upstreams: frontends, port: o.port });
  const configs = new Map<ClusterHost, string>();
  for (const h of hosts) {
    const dir = path.join(o.stateDir, `${h.service}-${h.index}`);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(
      path.join(dir, 'development.yaml'),
      fill(template, {
        SHARDS: o.shards ?? 4,
        DEFAULT_MAX_CONNS: maxConns.default,
        VISIBILITY_MAX_CONNS: maxConns.visibility,
        DB: o.database ?? 'temporal',
        PG_HOST: o.pg.host,
        PG_PORT: o.pg.port,
        PG_USER: o.pg.user,
        PG_PASSWORD: o.pg.password,
        // This host's own service on its ports; the others' entries get free ports it never binds.
        ...Object.fromEntries(
          await Promise.all(
            (['frontend', 'history', 'matching', 'worker'] as const).flatMap((svc) => [
              (svc === h.service ? Promise.resolve(h.grpcPort) : freeHostPort(hostPorts)).then((p) => [`${svc.toUpperCase()}_GRPC_PORT`, p] as const),
              (svc === h.service ? Promise.resolve(h.membershipPort) : freeHostPort(hostPorts)).then(
                (p) => [`${svc.toUpperCase()}_MEMBERSHIP_PORT`, p] as const,
              ),
            ]),
          ),
        ),
        FRONTEND_HTTP_PORT: await freeHostPort(hostPorts),
        FRONTEND_ADDRESS: balancer.address,
        DYNAMIC_CONFIG: dynamicConfig,
      }),
    );
    configs.set(h, dir);
  }

  // Hosts never outlive the process that started them, however it ends: the exit handler
  // for a normal end, the kernel's parent-death signal (spawnTied) for a SIGKILL.
  const killAll = () => hosts.forEach((h) => h.process?.kill('SIGKILL'));
  process.once('exit', killAll);
  const start = (h: ClusterHost) => {
    const dir = configs.get(h)!;
    const out = fs.openSync(path.join(dir, 'server.log'), 'a');
    h.process = spawnTied(tools.server, ['--root', dir, '--config', '.', '--env', 'development', '--allow-no-auth', 'start', '--service', h.service], {
      cwd: dir,
      stdio: ['ignore', out, out],
    });
    fs.closeSync(out);
  };
  const query = async <T extends object>(sql: string, params: unknown[]): Promise<T[]> => {
    const db = new Client({ host: o.pg.host, port: o.pg.port, user: o.pg.user, password: o.pg.password, database: o.database ?? 'temporal' });
    await db.connect();
    try {
      return (await db.query<T>(sql, params)).rows;
    } finally {
      await db.end();
    }
  };
  const stopHost = async (h: ClusterHost, signal: NodeJS.Signals) => {
    const p = h.process;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill(signal);
    await exited;
  };
  const cluster: TemporalCluster = {
    address: balancer.address,
    frontends,
    balancer,
    namespace,
    hosts,
    kill: (h) => stopHost(h, 'SIGKILL'),
    terminate: (h) => stopHost(h, 'SIGTERM'),
    async restart(h) {
      await stopHost(h, 'SIGTERM');
      start(h);
    },
    async joined(h, since, timeoutMs = 60_000) {
      await waitFor(`${h.service}#${h.index} in cluster_membership`, timeoutMs, async () => {
        const rows = await query<{ n: number }>(
          `SELECT count(*)::int AS n FROM cluster_membership
            WHERE rpc_port = $1 AND session_start >= (to_timestamp($2 / 1000.0) AT TIME ZONE 'UTC') AND last_heartbeat >= session_start`,
          [h.membershipPort, since - 1000],
        );
        if (!rows[0]?.n) throw new Error('not yet');
      });
    },
    async stop() {
      await Promise.all(hosts.map((h) => stopHost(h, 'SIGTERM')));
      await balancer.close();
      process.removeListener('exit', killAll);
    },
  };
  try {
    // One host first: it writes the cluster's metadata into the fresh database. Hosts that
    // start together on an empty database race to write it, and the losers exit.
    const [first, ...rest] = hosts;
    start(first!);
    await waitFor('the cluster metadata', 60_000, async () => {
      const rows = await query<{ n: number }>('SELECT count(*)::int AS n FROM cluster_metadata_info', []);
      if (!rows[0]?.n) throw new Error('not written yet');
    });
    for (const h of rest) start(h);
    for (const address of frontends) {
      await waitFor(`the Temporal frontend at ${address}`, 120_000, async () => {
        const c = await Connection.connect({ address, connectTimeout: 1000 });
        try {
          await c.workflowService.getSystemInfo({});
        } finally {
          await c.close();
        }
      });
    }
    await registerNamespace(o.cli, balancer.address, namespace, o.log);
    o.log(`Temporal cluster: ${hosts.map((h) => `${h.service}#${h.index}`).join(', ')}; frontends ${frontends.join(', ')} behind ${balancer.address}`);
    return cluster;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

async function registerNamespace(cli: string, address: string, namespace: string, log: (m: string) => void): Promise<void> {
  const t = (...args: string[]) => run(cli, [...args, '--address', address]);
  await t('operator', 'namespace', 'describe', '-n', namespace).catch(() => t('operator', 'namespace', 'create', '-n', namespace, '--retention', '1d'));
  // A new namespace is usable once every frontend has loaded it (the namespace cache refreshes every few seconds).
  for (let i = 0; ; i++) {
    const listed = await t('operator', 'search-attribute', 'list', '--namespace', namespace).then(
      (r) => r.stdout,
      () => undefined,
    );
    if (listed !== undefined) {
      for (const key of SAGA_SEARCH_ATTRIBUTES) {
        if (!new RegExp(`\\b${key.name}\\b`).test(listed)) {
          await t('operator', 'search-attribute', 'create', '--namespace', namespace, '--name', key.name, '--type', 'Keyword');
        }
      }
      log(`Temporal cluster: namespace ${namespace} with ${SAGA_SEARCH_ATTRIBUTES.map((k) => k.name).join(', ')}`);
      return;
    }
    if (i > 60) throw new Error(`namespace ${namespace} never became usable on ${address}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
