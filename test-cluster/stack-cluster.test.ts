/**
 * `npm run stack -- --temporal cluster`, the one command: it brings up its embedded
 * PostgreSQL, the cluster's seven hosts behind one address and the Web UI, prints
 * what to export, and on Ctrl-C stops every process it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { freePort } from '../src/ports';

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

test('npm run stack -- --temporal cluster: up with one command, its address and Web UI answer, everything stopped on Ctrl-C', async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-stack-cluster-'));
  fs.chmodSync(stateDir, 0o755);
  const pgPort = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, SAGAFLOW_STATE_DIR: stateDir, SAGAFLOW_EMBEDDED_PG_PORT: String(pgPort) };
  for (const k of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'PAYMENT_PROVIDER_URL', 'CARRIER_URL']) delete env[k];
  stack = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/stack.ts', '--temporal', 'cluster'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  stack.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  stack.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => stack!.once('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => out.includes('The stack is up') && (clearInterval(timer), resolve()), 200);
    void exited.then((code) => (clearInterval(timer), reject(new Error(`the stack exited ${code}:\n${out}`))));
  });

  const address = /TEMPORAL_ADDRESS=(\S+)/.exec(out)?.[1];
  const frontends = /frontends (\S+), (\S+) behind (\S+)/.exec(out);
  const ui = /Temporal UI: (\S+)/.exec(out)?.[1];
  expect(frontends?.[3]).toBe(address);
  expect(ui).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

  // The printed address is a working Temporal, and the UI shows its namespace.
  const connection = await Connection.connect({ address: address! });
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

  stack.kill('SIGINT');
  expect(await exited).toBe(0);
  // Nothing it started is left listening: the balancer, both frontends, the UI, its PostgreSQL.
  for (const a of [address!, frontends![1]!, frontends![2]!, ui!.replace('http://', ''), `127.0.0.1:${pgPort}`]) expect(await refuses(a)).toBe(true);
}, 240_000);
