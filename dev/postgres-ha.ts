import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { freePort, waitFor } from '../src/ports';
import { spawnTied } from '../src/tied-spawn';
import { isExecutable } from './go-build';
import { onPath } from './temporal';

/**
 * sagaflow's database as a primary with a synchronous standby under pg_auto_failover
 * (Debian's `postgresql-NN-auto-failover` and `pg-auto-failover-cli`): a monitor and two
 * data nodes, each a `pg_autoctl run` (its keeper and its PostgreSQL) in a directory of its
 * own, on free ports. The monitor decides every failover and pg_autoctl carries it out;
 * this module only creates the nodes, starts and stops the keepers, and reads the monitor.
 *
 * Every sagaflow process reaches the primary through one multi-host URL
 * (`postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write`, src/db/multi-host.ts).
 */
export interface HaNode {
  name: string;
  port: number;
  pgdata: string;
  /** The pid of this node's `pg_autoctl run` (its process group holds the keeper and the postmaster). */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** How its `pg_autoctl run` ended, once it has. */
  exit(): string | undefined;
}

/** One row of the monitor's view of the formation. */
export interface HaNodeState {
  name: string;
  port: number;
  /** What the node's keeper last reported: primary, secondary, wait_primary, catchingup, ... */
  reported: string;
  /** What the monitor wants it to be. */
  assigned: string;
  /** The monitor's health check: true when it last reached the node's PostgreSQL. */
  healthy: boolean;
}

export interface PostgresHa {
  /** The application database on whichever node is primary: every sagaflow process's DATABASE_URL. */
  url: string;
  /** The monitor's database (pg_auto_failover), for reading the formation's state. */
  monitorUrl: string;
  dir: string;
  /** The data nodes, node1 and node2. */
  nodes: HaNode[];
  /** The monitor: a PostgreSQL of its own under its own `pg_autoctl run`. */
  monitor: HaNode;
  /** The monitor's view of every data node. */
  state(): Promise<HaNodeState[]>;
  /**
   * The node that takes writes, as the monitor has it (reported and assigned alike): `primary` with
   * its standby, `wait_primary` alone (its standby gone or catching up), `single` without one.
   */
  primary(): Promise<HaNode | undefined>;
  /** The formation's number_sync_standbys and the primary's synchronous_standby_names. */
  replication(): Promise<{ numberSyncStandbys: number; synchronousStandbyNames: string | undefined }>;
  /** Resolves once one node is primary and every other a healthy secondary (sync standbys in place). */
  waitUntilReplicating(timeoutMs?: number): Promise<{ primary: HaNode; standbys: HaNode[] }>;
  /** SIGKILLs a node's keeper and its PostgreSQL (the whole process group), as a crash would. */
  kill(node: HaNode): Promise<void>;
  /** Starts a node's keeper (and through it its PostgreSQL) again, if it is not running; the monitor rejoins it. */
  start(node: HaNode): Promise<void>;
  stop(): Promise<void>;
}

export interface PostgresHaOptions {
  /** Where the monitor, the nodes, their configuration and logs live (a temporary directory by default). */
  dir?: string;
  database?: string;
  /** Each data node's max_connections (PostgreSQL's 100 when absent). */
  maxConnections?: number;
  /**
   * pg_auto_failover's own timeouts (a node is unhealthy after 20 s, a primary demotes itself 20 s into a
   * partition, the monitor waits 30 s for it), or the dev stack's fast ones: unhealthy after 2 s, demoted
   * 2 s into a partition, promotion 3 s after the monitor gives up on it; failover in about 6 s. The order
   * keeps them safe: an isolated primary has demoted itself before the monitor's wait is over.
   */
  timeouts?: 'fast' | 'default';
  log?: (m: string) => void;
}

/** The fast timeouts (PostgreSQL settings of the monitor's extension, in ms). */
export const FAST_MONITOR_SETTINGS: Record<string, number> = {
  'pgautofailover.health_check_period': 1000,
  'pgautofailover.health_check_timeout': 1000,
  'pgautofailover.health_check_max_retries': 1,
  'pgautofailover.health_check_retry_delay': 500,
  'pgautofailover.node_considered_unhealthy_timeout': 2000,
  'pgautofailover.primary_demote_timeout': 3000,
};
/** The keeper's side of the fast timeouts (seconds): an isolated primary demotes itself after this. */
export const FAST_NETWORK_PARTITION_TIMEOUT_S = 2;

const NODE_NAMES = ['node1', 'node2'];
/** pg_auto_failover's states of a node that takes writes. */
const WRITABLE_STATES = ['single', 'wait_primary', 'primary'];

/** pg_autoctl: PG_AUTOCTL_PATH, PATH, or Debian's /usr/bin. */
export function findPgAutoctl(explicit = process.env.PG_AUTOCTL_PATH): string | undefined {
  if (explicit) {
    if (!isExecutable(explicit)) throw new Error(`PG_AUTOCTL_PATH=${explicit} is not an executable file`);
    return explicit;
  }
  return onPath('pg_autoctl') ?? ['/usr/bin/pg_autoctl', '/usr/local/bin/pg_autoctl'].find(isExecutable);
}

/**
 * The pg_ctl of the newest PostgreSQL that has the pgautofailover extension installed
 * (Debian: /usr/lib/postgresql/NN/bin/pg_ctl beside /usr/lib/postgresql/NN/lib/pgautofailover.so).
 */
export function findPgCtlWithAutoFailover(root = '/usr/lib/postgresql'): string | undefined {
  let versions: string[];
  try {
    versions = fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    return undefined;
  }
  for (const v of versions) {
    const pgCtl = path.join(root, v, 'bin', 'pg_ctl');
    if (isExecutable(pgCtl) && fs.existsSync(path.join(root, v, 'lib', 'pgautofailover.so'))) return pgCtl;
  }
  return undefined;
}

/**
 * pg_auto_failover from Debian's packages (apt-get, as root) where it is missing:
 * `pg-auto-failover-cli` (pg_autoctl) and the extension for the PostgreSQL major on the
 * machine (`postgresql-15-auto-failover` on bookworm), which brings that PostgreSQL along.
 */
export async function ensurePgAutoFailover(log: (m: string) => void): Promise<string | undefined> {
  const present = () => {
    const autoctl = findPgAutoctl();
    const pgCtl = findPgCtlWithAutoFailover();
    return autoctl && pgCtl ? `${autoctl} (PostgreSQL ${path.basename(path.dirname(path.dirname(pgCtl)))})` : undefined;
  };
  const found = present();
  if (found) return found;
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status !== 0) return undefined;
  const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const search = () =>
    spawnSync('apt-cache', ['search', '--names-only', '^postgresql-[0-9]+-auto-failover$'], { encoding: 'utf8' })
      .stdout.split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((p) => /^postgresql-\d+-auto-failover$/.test(p))
      .sort((a, b) => Number(/\d+/.exec(b)![0]) - Number(/\d+/.exec(a)![0]));
  // Package lists older than the archive name files it no longer has: read them anew once, and try again.
  const update = () => spawnSync('apt-get', ['update', '-q'], { stdio: 'ignore', env: aptEnv }).status === 0;
  let candidates = search();
  if (!candidates.length && update()) candidates = search();
  const installed = fs.existsSync('/usr/lib/postgresql') ? fs.readdirSync('/usr/lib/postgresql') : [];
  // The extension for a PostgreSQL already there, else the newest the archive has.
  const extension = candidates.find((p) => installed.includes(/\d+/.exec(p)![0])) ?? candidates[0];
  if (!extension) {
    log('pg_auto_failover: no postgresql-NN-auto-failover package in the apt sources (apt-get update first?)');
    return undefined;
  }
  log(`installing pg_auto_failover from Debian's packages (apt-get install pg-auto-failover-cli ${extension})`);
  const install = () => spawnSync('apt-get', ['install', '-y', '-q', 'pg-auto-failover-cli', extension], { stdio: 'ignore', env: aptEnv });
  let r = install();
  if (r.status !== 0 && update()) r = install();
  if (r.status !== 0) log(`apt-get install pg-auto-failover-cli ${extension} failed (exit ${r.status})`);
  return present();
}

/** pg_autoctl refuses to run as root: as root, every pg_autoctl runs as the postgres user. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return { uid, gid };
  } catch {
    throw new Error('running as root, pg_autoctl must run as the "postgres" user, and there is none (Debian\'s postgresql packages create it)');
  }
}

export async function startPostgresHa(opts: PostgresHaOptions = {}): Promise<PostgresHa> {
  const log = opts.log ?? (() => undefined);
  const autoctl = findPgAutoctl();
  const pgCtl = findPgCtlWithAutoFailover();
  if (!autoctl || !pgCtl) {
    throw new Error(
      'pg_auto_failover not found (pg_autoctl and a PostgreSQL with the pgautofailover extension): run `npm run tools:install` ' +
        "(installs Debian's pg-auto-failover-cli and postgresql-NN-auto-failover), or set PG_AUTOCTL_PATH",
    );
  }
  const database = opts.database ?? 'sagaflow';
  const fast = (opts.timeouts ?? 'fast') === 'fast';
  const owned = !opts.dir;
  const dir = path.resolve(opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-pg-ha-')));
  const user = runAs();
  for (const sub of ['', 'config', 'share', 'run', 'logs']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
  if (user) {
    fs.chmodSync(dir, 0o755);
    for (const sub of ['', 'config', 'share', 'run', 'logs']) fs.chownSync(path.join(dir, sub), user.uid, user.gid);
    ensureSocketDir(user);
  }
  // pg_autoctl keeps its configuration and state under XDG directories: the HA directory's, not a home's.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^PG[A-Z]/.test(k) && !k.startsWith('XDG_')) env[k] = v;
  Object.assign(env, {
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    XDG_DATA_HOME: path.join(dir, 'share'),
    XDG_RUNTIME_DIR: path.join(dir, 'run'),
    PATH: `${path.dirname(pgCtl)}${path.delimiter}${process.env.PATH ?? ''}`,
  });

  const autoctlOnce = (args: string[], what: string) =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(autoctl, args, { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], ...user });
      let out = '';
      const keep = (b: Buffer) => {
        out = (out + b.toString()).slice(-6000);
      };
      child.stdout!.on('data', keep);
      child.stderr!.on('data', keep);
      const timer = setTimeout(() => child.kill('SIGKILL'), 180_000);
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        fs.appendFileSync(path.join(dir, 'logs', 'create.log'), `\n$ pg_autoctl ${args.join(' ')}\n${out}`);
        if (code === 0) resolve();
        else reject(new Error(`pg_autoctl could not ${what} (${signal ?? `exit ${code}`}):\n${lastLines(out, 12)}`));
      });
    });

  const keepers = new Map<string, ChildProcess>();
  const killOnExit = () => {
    for (const k of keepers.values()) killGroup(k, 'SIGKILL');
  };
  process.once('exit', killOnExit);
  const run = async (name: string, pgdata: string) => {
    const logFile = path.join(dir, 'logs', `${name}.log`);
    const out = fs.openSync(logFile, 'a');
    // Its own process group, so one kill reaches the keeper, its services and the postmaster alike.
    const child = spawnTied(autoctl, ['run', '--pgdata', pgdata], { env, cwd: dir, stdio: ['ignore', out, out], detached: true, ...user });
    fs.closeSync(out);
    child.once('error', () => undefined);
    keepers.set(name, child);
  };

  const handle = (name: string, port: number, pgdata: string): HaNode => ({
    name,
    port,
    pgdata,
    get pid() {
      return keepers.get(name)?.pid;
    },
    get running() {
      const k = keepers.get(name);
      return k !== undefined && k.exitCode === null && k.signalCode === null;
    },
    exit() {
      const k = keepers.get(name);
      if (!k || (k.exitCode === null && k.signalCode === null)) return undefined;
      return k.signalCode ? `killed by ${k.signalCode}` : `exit code ${k.exitCode}`;
    },
  });

  const monitorPort = await freePort();
  const monitorData = path.join(dir, 'monitor');
  const monitorUrl = `postgres://autoctl_node@127.0.0.1:${monitorPort}/pg_auto_failover?sslmode=disable`;
  const monitor = handle('monitor', monitorPort, monitorData);
  const nodes: HaNode[] = [];
  const stopAll = async () => {
    process.removeListener('exit', killOnExit);
    // The nodes first, together (a node stopped alone would be failed over), then the monitor.
    const gone = (k: ChildProcess | undefined) => stopKeeper(k, 20_000);
    await Promise.all(NODE_NAMES.map((n) => gone(keepers.get(n))));
    await gone(keepers.get('monitor'));
    keepers.clear();
    if (owned) fs.rmSync(dir, { recursive: true, force: true });
  };

  try {
    log(`pg_auto_failover: ${autoctl} with ${pgCtl}; monitor on 127.0.0.1:${monitorPort}, state in ${dir}`);
    await autoctlOnce(
      ['create', 'monitor', '--pgdata', monitorData, '--pgport', String(monitorPort), '--pgctl', pgCtl, '--hostname', '127.0.0.1', '--auth', 'trust', '--no-ssl'],
      'create the monitor',
    );
    // The monitor has no --listen: loopback only, as the nodes.
    await autoctlOnce(['config', 'set', '--pgdata', monitorData, 'postgresql.listen_addresses', '127.0.0.1'], "set the monitor's listen address");
    appendAutoConf(monitorData, { shared_buffers: '64MB', ...(fast ? FAST_MONITOR_SETTINGS : {}) }, user);
    await run('monitor', monitorData);
    await waitFor('the pg_auto_failover monitor', 60_000, async () => {
      assertAlive(keepers.get('monitor'), 'the monitor', dir);
      await withClient(monitorUrl, (c) => c.query('SELECT 1 FROM pgautofailover.formation LIMIT 1'));
    });

    for (const name of NODE_NAMES) {
      const port = await freePort();
      const pgdata = path.join(dir, name);
      log(`pg_auto_failover: creating ${name} on 127.0.0.1:${port}`);
      // The first node initialises the database; the second is a pg_basebackup of it, made a standby.
      await autoctlOnce(
        ['create', 'postgres', '--pgdata', pgdata, '--pgport', String(port), '--pgctl', pgCtl, '--listen', '127.0.0.1', '--hostname', '127.0.0.1',
          '--name', name, '--dbname', database, '--monitor', monitorUrl, '--auth', 'trust', '--no-ssl'],
        `create ${name}`,
      );
      if (fast) {
        await autoctlOnce(['config', 'set', '--pgdata', pgdata, 'timeout.network_partition_timeout', String(FAST_NETWORK_PARTITION_TIMEOUT_S)], `set ${name}'s timeouts`);
      }
      // pg_autoctl sizes shared_buffers for a machine of its own (a quarter of RAM); three servers share this one.
      if (name === NODE_NAMES[0]) {
        appendAutoConf(pgdata, { shared_buffers: '128MB', ...(opts.maxConnections ? { max_connections: opts.maxConnections } : {}) }, user);
      }
      nodes.push(handle(name, port, pgdata));
      await run(name, pgdata);
      await waitFor(`${name} under pg_auto_failover`, 90_000, async () => {
        assertAlive(keepers.get(name), name, dir);
        const s = (await readState(monitorUrl)).find((n) => n.name === name);
        if (!s || s.reported !== s.assigned || !['single', 'primary', 'secondary'].includes(s.reported)) {
          throw new Error(`${name} is ${s ? `${s.reported} (assigned ${s.assigned})` : 'not registered'}`);
        }
      });
    }
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }

  const url = `postgresql://postgres@${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}/${database}?target_session_attrs=read-write`;
  const byName = (name: string) => nodes.find((n) => n.name === name);
  const ha: PostgresHa = {
    url,
    monitorUrl,
    dir,
    nodes,
    monitor,
    state: () => readState(monitorUrl),
    async primary() {
      const p = (await readState(monitorUrl)).find((s) => WRITABLE_STATES.includes(s.reported) && s.assigned === s.reported);
      return p && byName(p.name);
    },
    async replication() {
      const primary = await ha.primary();
      const numberSyncStandbys = Number(
        (await withClient(monitorUrl, (c) => c.query<{ n: number }>("SELECT number_sync_standbys AS n FROM pgautofailover.formation WHERE formationid = 'default'"))).rows[0]?.n,
      );
      const synchronousStandbyNames = primary
        ? (await withClient(nodeUrl(primary.port, database), (c) => c.query<{ s: string }>("SELECT current_setting('synchronous_standby_names') AS s"))).rows[0]?.s
        : undefined;
      return { numberSyncStandbys, synchronousStandbyNames };
    },
    async waitUntilReplicating(timeoutMs = 90_000) {
      return waitFor('a primary with a healthy secondary', timeoutMs, async () => {
        const states = await readState(monitorUrl);
        const primary = states.filter((s) => s.reported === 'primary' && s.assigned === 'primary' && s.healthy);
        const standbys = states.filter((s) => s.reported === 'secondary' && s.assigned === 'secondary' && s.healthy);
        if (primary.length !== 1 || standbys.length !== states.length - 1) {
          throw new Error(states.map((s) => `${s.name} ${s.reported}/${s.assigned}${s.healthy ? '' : ' (unhealthy)'}`).join(', '));
        }
        return { primary: byName(primary[0]!.name)!, standbys: standbys.map((s) => byName(s.name)!) };
      });
    },
    async kill(node) {
      const k = keepers.get(node.name);
      if (!k || k.exitCode !== null || k.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => k.once('exit', () => resolve()));
      killGroup(k, 'SIGKILL');
      await exited;
    },
    async start(node) {
      const k = keepers.get(node.name);
      if (k && k.exitCode === null && k.signalCode === null) return;
      await run(node.name, node.pgdata);
    },
    stop: stopAll,
  };
  return ha;
}

/** A URL to one node (the keepers' trust rules let the postgres user in from loopback). */
function nodeUrl(port: number, database: string): string {
  return `postgresql://postgres@127.0.0.1:${port}/${database}`;
}

async function readState(monitorUrl: string): Promise<HaNodeState[]> {
  const res = await withClient(monitorUrl, (c) =>
    c.query<{ nodename: string; nodeport: number; current_group_state: string; assigned_group_state: string; health: number }>(
      "SELECT nodename, nodeport, current_group_state, assigned_group_state, health FROM pgautofailover.current_state('default') ORDER BY node_id",
    ),
  );
  return res.rows.map((r) => ({
    name: r.nodename,
    port: r.nodeport,
    reported: r.current_group_state,
    assigned: r.assigned_group_state,
    healthy: r.health === 1,
  }));
}

async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const c = new Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  c.on('error', () => undefined);
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/**
 * Settings that win over pg_autoctl's own (postgresql.auto.conf is read last). Written while the
 * server is down; the first node's are copied to the second by its base backup.
 */
function appendAutoConf(pgdata: string, settings: Record<string, string | number>, user: { uid: number; gid: number } | undefined): void {
  const file = path.join(pgdata, 'postgresql.auto.conf');
  const lines = Object.entries(settings).map(([k, v]) => `${k} = '${String(v)}'`);
  fs.appendFileSync(file, `# sagaflow's dev and test settings\n${lines.join('\n')}\n`);
  if (user) fs.chownSync(file, user.uid, user.gid);
}

/** PostgreSQL's Unix sockets go to Debian's default directory; on a machine with no server of its own it may be missing. */
function ensureSocketDir(user: { uid: number; gid: number }): void {
  const dir = '/var/run/postgresql';
  if (fs.existsSync(dir)) return;
  fs.mkdirSync(dir, { recursive: true, mode: 0o2775 });
  fs.chownSync(dir, user.uid, user.gid);
}

function assertAlive(k: ChildProcess | undefined, what: string, dir: string): void {
  if (k && (k.exitCode !== null || k.signalCode !== null)) {
    const name = what.startsWith('the ') ? what.slice(4) : what;
    throw new Error(`pg_autoctl run for ${what} exited (${k.signalCode ?? `exit ${k.exitCode}`}); see ${path.join(dir, 'logs', `${name}.log`)}`);
  }
}

/** Signals the keeper's whole process group, whether or not the keeper itself is still there. */
function killGroup(k: ChildProcess, signal: NodeJS.Signals): void {
  if (k.pid === undefined) return;
  try {
    process.kill(-k.pid, signal);
  } catch {
    /* already gone */
  }
}

/**
 * SIGTERM to the keeper alone (it stops its PostgreSQL with a fast shutdown; a SIGTERM to the
 * postmaster itself would be a smart one, waiting for every client), then SIGKILL to the group after `graceMs`.
 */
async function stopKeeper(k: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!k) return;
  if (k.exitCode !== null || k.signalCode !== null) return killGroup(k, 'SIGKILL');
  const exited = new Promise<void>((resolve) => k.once('exit', () => resolve()));
  k.kill('SIGTERM');
  const timer = setTimeout(() => killGroup(k, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  // What the keeper leaves of its group (a postmaster finishing its shutdown) goes too.
  killGroup(k, 'SIGKILL');
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join('\n');
}
