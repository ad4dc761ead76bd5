/**
 * `npm run stack -- --temporal cluster`, the one command: it brings up its embedded
 * PostgreSQL, the cluster's seven hosts behind one address and the Web UI, a
 * 3-node NATS JetStream cluster, prints
 * what to export, and on Ctrl-C stops every process it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { freePort, waitFor } from '../src/ports';
import { isRunning, killAll, processesWith, untilGone } from '../test/helpers/processes';
import { clientConnectionOptions } from '../src/temporal-connect';

const ROOT = path.resolve(__dirname, '..');
let stack: ChildProcess | undefined;
afterAll(() => {
  stack?.kill('SIGKILL');
});

const refuses = (address: string) =>
  new Promise<boolean>((resolve) => {
    const i = address.lastIndexOf(':');
    const s = net.connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });

function postmasterPid(stateDir: string): number | undefined {
  try {
    return Number(fs.readFileSync(path.join(stateDir, 'pg', 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  }
}

/** Starts the stack with its own state directory and ports; resolves once it says it is up. */
async function startStack(): Promise<{ stateDir: string; pgPort: number; out: () => string; exited: Promise<number | null> }> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-stack-cluster-'));
  fs.chmodSync(stateDir, 0o755);
  const pgPort = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, SAGAFLOW_STATE_DIR: stateDir, SAGAFLOW_EMBEDDED_PG_PORT: String(pgPort) };
  for (const k of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'PAYMENT_PROVIDER_URL', 'CARRIER_URL', 'NATS_URL']) delete env[k];
  stack = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/stack.ts', '--temporal', 'cluster'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  stack.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  stack.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => stack!.once('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => out.includes('Ctrl-C stops everything') && (clearInterval(timer), resolve()), 200);
    void exited.then((code) => (clearInterval(timer), reject(new Error(`the stack exited ${code}:\n${out}`))));
  });
  return { stateDir, pgPort, out: () => out, exited };
}

test('npm run stack -- --temporal cluster: up with one command, its address and Web UI answer, everything stopped on Ctrl-C', async () => {
  const { pgPort, out: said, exited } = await startStack();
  const out = said();
  const address = /TEMPORAL_ADDRESS=(\S+)/.exec(out)?.[1];
  const frontends = /frontends (\S+), (\S+) behind (\S+)/.exec(out);
  const ui = /Temporal UI: (\S+)/.exec(out)?.[1];
  expect(frontends?.[3]).toBe(address);
  expect(ui).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  // Three NATS nodes, every one in the URL to export, with the streams' replica count.
  const nats = /NATS_URL=(\S+)/.exec(out)?.[1]?.split(',') ?? [];
  expect(nats).toHaveLength(3);
  expect(out).toContain('NATS_STREAM_REPLICAS=3');

  // The printed address is a working Temporal, and the UI shows its namespace.
  const connection = await Connection.connect(clientConnectionOptions({ address: address! }));
  try {
    const client = new Client({ connection });
    const { executions } = await client.workflowService.listWorkflowExecutions({ namespace: 'default', query: '' });
    expect(executions).toBeDefined();
    const res = await fetch(`${ui}/api/v1/namespaces/default`);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { namespaceInfo?: { name?: string } }).namespaceInfo?.name).toBe('default');
  } finally {
    await connection.close();
  }

  stack!.kill('SIGINT');
  expect(await exited).toBe(0);
  // Nothing it started is left listening: the balancer, both frontends, the UI, its PostgreSQL.
  const natsAddresses = nats.map((u) => u.replace('nats://', ''));
  for (const a of [address!, frontends![1]!, frontends![2]!, ui!.replace('http://', ''), `127.0.0.1:${pgPort}`, ...natsAddresses]) expect(await refuses(a)).toBe(true);
}, 240_000);

test('a stack killed with SIGKILL leaves no Temporal host or Web UI running (no exit handler runs; the kernel ends them)', async () => {
  const { stateDir, out: said, exited } = await startStack();
  const cluster = path.join(stateDir, 'cluster');
  const frontends = /frontends (\S+), (\S+) behind (\S+)/.exec(said())!;
  const ui = /Temporal UI: (\S+)/.exec(said())![1]!.replace('http://', '');
  // Two frontends, two history, two matching, the internal worker, the UI server and three NATS nodes.
  expect(processesWith(cluster)).toHaveLength(11);

  stack!.kill('SIGKILL');
  await exited;
  try {
    await untilGone(() => processesWith(cluster), 15_000);
    // A killed multi-threaded process shows as a zombie before its last thread has
    // closed its sockets: the ports close a moment later.
    await waitFor('the frontends and the UI to refuse', 10_000, async () => {
      const open: string[] = [];
      for (const a of [frontends[1]!, frontends[2]!, ui]) if (!(await refuses(a))) open.push(a);
      if (open.length) throw new Error(`still accepting: ${open.join(', ')}`);
    });
  } finally {
    // The embedded PostgreSQL is left running (a database is not killed; the next stack on
    // this state directory names it and says to stop it). Stop it here, and anything left.
    const postmaster = postmasterPid(stateDir);
    if (postmaster && isRunning(postmaster)) killAll([postmaster], 'SIGINT');
    killAll(processesWith(cluster));
    await untilGone(() => processesWith(stateDir), 15_000);
  }
}, 240_000);
