import { spawnSync, type ChildProcess } from 'node:child_process';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort, waitFor } from '../src/ports';
import { spawnTied } from '../src/tied-spawn';
import { isExecutable } from './go-build';
import { onPath } from './temporal';

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
  // Debian installs it in /usr/sbin, which a non-root PATH often leaves out.
  return onPath('nats-server') ?? ['/usr/sbin/nats-server', '/usr/local/sbin/nats-server'].find(isExecutable);
}

export async function startNatsServer(
  opts: { port?: number; storeDir?: string; log?: (m: string) => void; extraArgs?: string[]; jetstream?: boolean } = {},
): Promise<NatsServer> {
  const bin = findNatsServer();
  if (!bin) throw new Error('nats-server not found: set NATS_URL, or NATS_SERVER_PATH, or run `npm run tools:install` (installs Debian\'s nats-server)');
  const port = opts.port ?? (await freePort());
  const storeDir = opts.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-nats-'));
  const child: ChildProcess = spawnTied(bin, ['-a', '127.0.0.1', '-p', String(port), ...(opts.jetstream === false ? [] : ['-js', '-sd', storeDir]), ...(opts.extraArgs ?? [])], {
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
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status !== 0) return undefined;
  log('installing nats-server from Debian\'s package (apt-get install nats-server)');
  const r = spawnSync('apt-get', ['install', '-y', '-q', 'nats-server'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (r.status !== 0) log(`apt-get install nats-server failed (exit ${r.status})`);
  return findNatsServer();
}

/**
 * A JetStream cluster of `nodes` nats-servers on this machine (3 by default): each with a
 * client port, a cluster port and a store of its own, routed to the others. Streams created
 * with `num_replicas: 3` keep every message on all three: one node killed loses nothing.
 */
export interface NatsCluster {
  /** Every node's client URL, comma-separated (NATS_URL for a cluster). */
  url: string;
  nodes: NatsServer[];
  /** Kills node i (SIGKILL by default) and starts it again on the same ports and store. */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startNatsCluster(opts: { nodes?: number; dir?: string; log?: (m: string) => void } = {}): Promise<NatsCluster> {
  const count = opts.nodes ?? 3;
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-nats-cluster-'));
  const ports = await Promise.all(Array.from({ length: count }, () => freePort()));
  const clusterPorts = await Promise.all(Array.from({ length: count }, () => freePort()));
  const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
  const nodeOptions = (i: number) => ({
    port: ports[i]!,
    storeDir: path.join(dir, `n${i + 1}`),
    log: opts.log,
    extraArgs: ['--server_name', `n${i + 1}`, '--cluster_name', 'sagaflow', '--cluster', `nats://127.0.0.1:${clusterPorts[i]}`, '--routes', routes],
  });
  const nodes: NatsServer[] = [];
  try {
    for (let i = 0; i < count; i++) nodes.push(await startNatsServer(nodeOptions(i)));
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
    throw err;
  }
  const url = nodes.map((n) => n.url).join(',');
  await waitForJetStream(url, count);
  opts.log?.(`NATS JetStream cluster of ${count} at ${url}`);
  return {
    url,
    nodes,
    async restart(i) {
      await nodes[i]!.stop('SIGKILL');
      nodes[i] = await startNatsServer(nodeOptions(i));
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      if (!opts.dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Resolves once the cluster can place a stream on all `replicas` nodes: a meta leader is elected
 * and knows every peer (before that, an R3 stream is refused with "no suitable peers").
 */
async function waitForJetStream(url: string, replicas: number): Promise<void> {
  await waitFor('the JetStream cluster', 60_000, async () => {
    const nc = await connect({ servers: url.split(','), timeout: 1000 });
    try {
      const jsm = await jetstreamManager(nc, { timeout: 2000 });
      await jsm.streams.add({ name: 'SAGAFLOW_READY_PROBE', subjects: ['sagaflow.ready-probe'], num_replicas: replicas });
      await jsm.streams.delete('SAGAFLOW_READY_PROBE');
    } finally {
      await nc.close();
    }
  });
}
