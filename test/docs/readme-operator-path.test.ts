/**
 * The README's operator path followed in its own order, as a newcomer does it, each step a
 * command in a shell of its own: `npm run stack` in one; in each other the `export ...` line it
 * prints, then `npm run worker`, `npm run api`, `npm run clients -- create acme`; then the HTTP
 * API section's block verbatim, then the operator's look at what it did (`npm run sagas -- list`,
 * `show`, `npm run inventory -- list`); then Ctrl-C everywhere. Each step must work after the
 * ones before it: what each block does alone is tested in readme.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/ports';

jest.setTimeout(300_000);

const ROOT = path.resolve(__dirname, '../..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The first ```sh block after the heading. */
function shellBlockAfter(heading: string): string {
  const at = README.indexOf(`\n${heading}\n`);
  if (at < 0) throw new Error(`README has no "${heading}"`);
  const block = /```sh\n([\s\S]*?)```/.exec(README.slice(at));
  if (!block?.[1]) throw new Error(`no sh block after "${heading}"`);
  return block[1];
}

/** The commands a line of the "Running the parts yourself" block runs, by what they start with. */
function partsLine(startsWith: string): string {
  const line = shellBlockAfter('## Running the parts yourself')
    .split('\n')
    .find((l) => l.startsWith(startsWith));
  if (!line) throw new Error(`the README's parts block has no line starting "${startsWith}"`);
  return line.replace(/\s+#.*$/, '').trim();
}

interface Shell {
  child: ChildProcess;
  output(): string;
  /** The exit code, or the signal that ended it. */
  exited: Promise<number | NodeJS.Signals | null>;
}

const shells: Shell[] = [];
let stateDir: string;

/** The reader's environment: nothing of the test run's own stack, nothing that would make a command find one. */
function readerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(DATABASE_URL|TEMPORAL_|NATS_|PAYMENT_PROVIDER_URL|CARRIER_URL|SAGAFLOW_PAYLOAD_|API_|METRICS_PORT|WEBHOOK_)/.test(k)) continue;
    env[k] = v;
  }
  return env;
}

/** A shell of its own running `script` with bash, its own process group (so Ctrl-C reaches what it started). */
function shell(script: string, env: NodeJS.ProcessEnv): Shell {
  const child = spawn('bash', ['-c', script], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  const s = { child, output: () => out, exited };
  shells.push(s);
  return s;
}

/** Ctrl-C in that shell: SIGINT to its process group. */
function ctrlC(s: Shell): void {
  try {
    process.kill(-s.child.pid!, 'SIGINT');
  } catch {
    // already gone
  }
}

async function until(s: Shell, text: string | RegExp, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  const seen = () => (typeof text === 'string' ? s.output().includes(text) : text.test(s.output()));
  while (!seen()) {
    if (s.child.exitCode !== null || Date.now() > end) throw new Error(`never saw ${String(text)}; the shell said:\n${s.output()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Runs a one-shot command in a fresh shell; its exit code and output. */
async function run(script: string, env: NodeJS.ProcessEnv): Promise<{ code: number | NodeJS.Signals | null; out: string }> {
  const s = shell(script, env);
  return { code: await s.exited, out: s.output() };
}

beforeAll(() => {
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-readme-path-'));
  fs.chmodSync(stateDir, 0o755);
});

afterAll(async () => {
  for (const s of shells) if (s.child.exitCode === null) ctrlC(s);
  await Promise.all(shells.map((s) => Promise.race([s.exited, new Promise((r) => setTimeout(r, 15_000))])));
  for (const s of shells) {
    if (s.child.exitCode !== null) continue;
    try {
      process.kill(-s.child.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
  fs.rmSync(stateDir, { recursive: true, force: true });
});

test('stack, worker, API, a client, the HTTP block, the operator commands, then Ctrl-C: each step works after the ones before it', async () => {
  // Free ports rather than the well-known ones: another stack (test/integration/stack.test.ts) may start at the same time.
  const base = { ...readerEnv(), SAGAFLOW_STATE_DIR: stateDir, SAGAFLOW_EMBEDDED_PG_PORT: String(await freePort()), SAGAFLOW_STACK_PORTS: 'any' };
  // Shell 1: the stack, which prints the line every other shell starts with.
  const stack = shell(partsLine('npm run stack '), base);
  await until(stack, 'Ctrl-C stops everything');
  const exportLine = /^ {2}(export DATABASE_URL=.*)$/m.exec(stack.output())?.[1];
  expect(exportLine).toBeDefined();
  const apiPort = await freePort();
  const inShell = (command: string) => `${exportLine}\n${command}`;
  const env = { ...base, API_PORT: String(apiPort) };

  // Shells 2 and 3: a worker and the API, as the block says.
  const worker = shell(inShell(`exec ${partsLine('npm run worker')}`), env);
  const api = shell(inShell(`exec ${partsLine('npm run api')}`), env);
  await Promise.all([until(worker, '"msg":"worker ready"'), until(api, '"msg":"api ready"')]);

  // A client, by the block's own line; then the HTTP section's block verbatim.
  const client = await run(inShell(partsLine('npm run clients -- create')), env);
  expect(client).toMatchObject({ code: 0 });
  expect(client.out).toMatch(/sk_[A-Za-z0-9_-]+/);
  const http = await run(inShell(`set -euo pipefail\nAPI=http://127.0.0.1:${apiPort}\n${shellBlockAfter('## HTTP API')}`), env);
  expect({ code: http.code, out: http.out }).toMatchObject({ code: 0 });
  const created = /"id":"([A-Za-z0-9_-]+)"[^\n]*"status":"completed"/.exec(http.out);
  expect(created).not.toBeNull();
  const orderId = created![1]!;

  // The operator looks at what happened.
  const list = await run(inShell('npm run -s sagas -- list'), env);
  expect(list.code).toBe(0);
  expect(list.out).toContain(orderId);
  const show = await run(inShell(`npm run -s sagas -- show ${orderId} --json`), env);
  expect(show.code).toBe(0);
  expect(show.out).toContain('"status": "completed"');
  const stock = await run(inShell(partsLine('npm run inventory -- list')), env);
  expect(stock.code).toBe(0);
  expect(stock.out).toContain('widget');

  // Ctrl-C in every shell: each stops cleanly, nothing left running in it, the stack last. (npm,
  // which ran the command, ends as a Ctrl-C ends it: 0, or by the signal it passed on.)
  const stopped = (code: number | NodeJS.Signals | null) => code === 0 || code === 'SIGINT';
  ctrlC(api);
  ctrlC(worker);
  expect(stopped(await api.exited)).toBe(true);
  expect(stopped(await worker.exited)).toBe(true);
  expect(worker.output()).toContain('"msg":"worker stopped"');
  ctrlC(stack);
  expect(stopped(await stack.exited)).toBe(true);
  for (const s of [api, worker, stack]) await untilGroupGone(s);
  expect(api.output()).not.toMatch(/\n\s+at /);
});

/** Resolves once no process of the shell's group is left (a stray child would keep a port or the database). */
async function untilGroupGone(s: Shell): Promise<void> {
  for (let i = 0; i < 120; i++) {
    try {
      process.kill(-s.child.pid!, 0);
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`processes of the shell that ran "${s.child.spawnargs.join(' ')}" are still running`);
}
