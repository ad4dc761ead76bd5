/**
 * Start-up failures of the embedded PostgreSQL name their cause and the fix:
 * a second stack on the same state directory or port, and (as root) a
 * directory the postgres user cannot traverse. The embedded PostgreSQL is ESM
 * only, so each one runs as a process of its own (dev/chaos/postgres-process.ts).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/ports';

const ROOT = path.resolve(__dirname, '../..');
const TS = ['-r', 'ts-node/register/transpile-only'];
const PG_PROCESS = [...TS, 'dev/chaos/postgres-process.ts'];
const isRoot = process.getuid?.() === 0;
let dir: string;
let first: ChildProcess;
let firstPort: number;

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code) : 0, stdout, stderr }),
    ),
  );
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-pg-faults-'));
  fs.chmodSync(dir, 0o755);
  firstPort = await freePort();
  first = spawn(process.execPath, [...PG_PROCESS, path.join(dir, 'a'), String(firstPort)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    first.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('postgres ready')) resolve();
    });
    first.once('exit', (code) => reject(new Error(`the first PostgreSQL exited ${code}`)));
  });
}, 120_000);

afterAll(async () => {
  if (first && first.exitCode === null) {
    const exited = new Promise((r) => first.once('exit', r));
    first.kill('SIGTERM');
    await exited;
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a second PostgreSQL on a state directory in use is refused, naming the directory, its pid and the fix', async () => {
  const { code, stderr } = await run([...PG_PROCESS, path.join(dir, 'a'), String(await freePort())]);
  expect(code).toBe(1);
  expect(stderr.trim()).toMatch(
    /^\S+\/a is in use by another PostgreSQL \(pid \d+\): another stack, demo or test run uses this state directory\. Stop it, or run this one beside it with its own SAGAFLOW_STATE_DIR and SAGAFLOW_EMBEDDED_PG_PORT\.$/,
  );
}, 60_000);

test('a second PostgreSQL on a port in use is refused, naming the port and the fix; nothing is written', async () => {
  const { code, stderr } = await run([...PG_PROCESS, path.join(dir, 'b'), String(firstPort)]);
  expect(code).toBe(1);
  expect(stderr.trim()).toBe(`port ${firstPort} is already taken (another stack or PostgreSQL?). Stop it, or set SAGAFLOW_EMBEDDED_PG_PORT to a free port.`);
  expect(fs.existsSync(path.join(dir, 'b'))).toBe(false);
}, 60_000);

(isRoot ? test : test.skip)('as root, a data directory the postgres user cannot traverse is refused before initdb runs', async () => {
  const closed = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-closed-'));
  fs.chmodSync(closed, 0o700);
  try {
    const { code, stderr } = await run([...PG_PROCESS, path.join(closed, 'state', 'pg'), String(await freePort())]);
    expect(code).toBe(1);
    expect(stderr.trim()).toMatch(new RegExp(`^Running as root, .* cannot reach its data directory: ${closed} .*SAGAFLOW_STATE_DIR`));
    expect(fs.readdirSync(closed)).toEqual([]);
  } finally {
    fs.rmSync(closed, { recursive: true, force: true });
  }
}, 60_000);

test('npm run stack on a taken port exits 1 with that one line, not a stack trace or "undefined"', async () => {
  const { code, stderr } = await run([...TS, 'bin/stack.ts'], {
    DATABASE_URL: '',
    SAGAFLOW_STATE_DIR: path.join(dir, 'cli'),
    SAGAFLOW_EMBEDDED_PG_PORT: String(firstPort),
  });
  expect(code).toBe(1);
  expect(stderr.trim()).toBe(`port ${firstPort} is already taken (another stack or PostgreSQL?). Stop it, or set SAGAFLOW_EMBEDDED_PG_PORT to a free port.`);
}, 90_000);
