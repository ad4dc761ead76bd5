import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from '../src/ports';
import { spawnTied } from '../src/tied-spawn';
import { isExecutable } from './go-build';

/**
 * A NATS server with JetStream of the stack's own, for when NATS_URL is unset: the
 * `nats-server` program (NATS_SERVER_PATH, PATH, or Debian's package in /usr/sbin;
 * `npm run tools:install` installs that package where it is missing). Its store is a
 * directory of its own, so a restart on the same directory keeps the streams.
 */
export interface NatsServer {
  url: string;
  port: number;
  storeDir: string;
  /** SIGKILL (what a crash does) or SIGTERM; resolves once the process is gone. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** How the process ended, once it has. */
  exit(): string | undefined;
  pid: number | undefined;
}

export function findNatsServer(explicit = process.env.NATS_SERVER_PATH): string | undefined {
  if (explicit) {
    if (!isExecutable(explicit)) throw new Error(`NATS_SERVER_PATH=${explicit} is not an executable file`);
    return explicit;
  }
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    const candidate = dir && path.join(dir, 'nats-server');
    if (candidate && isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export async function startNatsServer(opts: { port?: number; storeDir?: string; log?: (m: string) => void } = {}): Promise<NatsServer> {
  const bin = findNatsServer();
  if (!bin) throw new Error('nats-server not found: set NATS_URL, or NATS_SERVER_PATH, or run `npm run tools:install` (installs Debian\'s nats-server)');
  const port = opts.port ?? (await freePort());
  const storeDir = opts.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-nats-'));
  const child: ChildProcess = spawnTied(bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };
  try {
    await waitFor('nats-server', 30_000, async () => {
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}: ${stderr}`);
      await new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.end();
          resolve();
        });
        s.once('error', reject);
      });
    });
  } catch (err) {
    await stop('SIGKILL');
    throw err;
  }
  opts.log?.(`nats-server (${bin}) at nats://127.0.0.1:${port}, JetStream store ${storeDir}`);
  const exit = () =>
    child.signalCode ? `killed by ${child.signalCode}` : child.exitCode !== null ? `exit code ${child.exitCode}` : undefined;
  return { url: `nats://127.0.0.1:${port}`, port, storeDir, stop, exit, pid: child.pid };
}

/** nats-server, installed from Debian's package (apt-get, as root) where it is missing. */
export async function ensureNatsServer(log: (m: string) => void): Promise<string | undefined> {
  const found = findNatsServer();
  if (found) return found;
  const { spawnSync } = await import('node:child_process');
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status !== 0) return undefined;
  log('installing nats-server from Debian\'s package (apt-get install nats-server)');
  const r = spawnSync('apt-get', ['install', '-y', '-q', 'nats-server'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) log(`apt-get install nats-server failed (exit ${r.status})`);
  return findNatsServer();
}
