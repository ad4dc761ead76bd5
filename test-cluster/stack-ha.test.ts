/**
 * `npm run stack -- --postgres ha`, the one command: sagaflow's database as a
 * pg_auto_failover formation (a monitor, a primary, a synchronous standby), the
 * DATABASE_URL it prints naming both nodes, writes reaching the primary through it,
 * and on Ctrl-C every pg_autoctl and postgres of the formation stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPool } from '../src/db/pool';
import { processesWith, untilGone } from '../test/helpers/processes';

const ROOT = path.resolve(__dirname, '..');
let stack: ChildProcess | undefined;
let haDir: string | undefined;
afterAll(async () => {
  stack?.kill('SIGKILL');
  // Whatever a failed run left: the formation's processes carry its directory in their command lines.
  if (haDir) for (const pid of processesWith(haDir)) process.kill(pid, 'SIGKILL');
});

test('npm run stack -- --postgres ha: a primary with a synchronous standby, one multi-host DATABASE_URL that writes to the primary, everything stopped on Ctrl-C', async () => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-stack-ha-'));
  fs.chmodSync(stateDir, 0o755);
  const env: NodeJS.ProcessEnv = { ...process.env, SAGAFLOW_STATE_DIR: stateDir };
  for (const k of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'PAYMENT_PROVIDER_URL', 'CARRIER_URL', 'NATS_URL']) delete env[k];
  stack = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/stack.ts', '--postgres', 'ha'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  stack.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  stack.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((r) => stack!.once('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => out.includes('Ctrl-C stops everything') && (clearInterval(timer), resolve()), 200);
    void exited.then((code) => (clearInterval(timer), reject(new Error(`the stack exited ${code}:\n${out}`))));
  });

  haDir = /\(state in (\S+)\)/.exec(out)?.[1];
  expect(haDir).toBeDefined();
  const formation = processesWith(haDir!);
  expect(formation.length).toBeGreaterThanOrEqual(6); // three pg_autoctl runs and their postgres, at least
  const url = /DATABASE_URL=(\S+)/.exec(out)?.[1]?.replace(/^'|'$/g, '');
  expect(url).toMatch(/^postgres(ql)?:\/\/[^/]*@127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/[^?]+\?.*target_session_attrs=read-write/);

  // Through the printed URL: the primary, with the standby synchronous, and a write that commits.
  const db = createPool({ connectionString: url!, max: 2 });
  try {
    const { rows } = await db.query<{ recovery: boolean; sync: string }>(
      `SELECT pg_is_in_recovery() AS recovery, current_setting('synchronous_standby_names') AS sync`,
    );
    expect(rows[0]!.recovery).toBe(false);
    expect(rows[0]!.sync).toMatch(/^ANY 1 \(pgautofailover_standby_\d+\)$/);
    const replicas = await db.query<{ sync_state: string }>('SELECT sync_state FROM pg_stat_replication');
    expect(replicas.rows.map((r) => r.sync_state)).toEqual(['quorum']);
    const written = await db.query<{ sku: string }>(
      `INSERT INTO inventory (sku, on_hand) VALUES ('stack-ha-probe', 1) ON CONFLICT (sku) DO UPDATE SET on_hand = inventory.on_hand + 1 RETURNING sku`,
    );
    expect(written.rows).toEqual([{ sku: 'stack-ha-probe' }]);
  } finally {
    await db.end();
  }

  stack.kill('SIGINT');
  expect(await exited).toBe(0);
  await untilGone(() => processesWith(haDir!), 30_000);
}, 300_000);
