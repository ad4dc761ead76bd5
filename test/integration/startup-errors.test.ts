/**
 * Start-up as docs/operations.md promises it, each case a real process (bin/api.ts, bin/worker.ts,
 * bin/migrate.ts) against the real Temporal dev server and PostgreSQL: a cause that a wait cannot
 * cure is one line on stderr naming it and the fix, no stack, and an exit code of its own; a
 * dependency that is down is waited for, with /healthz 200 and /readyz 503 saying what is awaited,
 * and served once it answers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { ExitCode } from '../../src/config';
import { freeStablePort } from '../../src/ports';
import { databaseUrl, uniqueId } from '../helpers/context';

const ROOT = path.resolve(__dirname, '../..');

interface Started {
  child: ChildProcess;
  exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
}

const started: Started[] = [];

function start(entry: string, env: Record<string, string>, args: string[] = []): Started {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, entry), ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const s = { child, exited, stdout: () => out, stderr: () => err };
  started.push(s);
  return s;
}

afterAll(async () => {
  for (const s of started) if (s.child.exitCode === null) s.child.kill('SIGKILL');
});

/** A port something else holds for the test's length. */
async function busyPort(): Promise<{ port: number; close(): void }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

/** A port nothing listens on (yet), outside the range outgoing connections take theirs from: a relay may bind it later. */
const taken = new Set<number>();
const deadPort = () => freeStablePort(taken);

/** The exit of a process that must end by itself: its code, and its stderr as lines. */
async function ended(s: Started): Promise<{ code: number | null; lines: string[] }> {
  const code = await s.exited;
  return { code, lines: s.stderr().trim().split('\n') };
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const get = async (url: string, init?: RequestInit) => {
  const res = await fetch(url, init);
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Record<string, unknown> };
};

const temporal = () => process.env.TEMPORAL_ADDRESS!;
const workerBase = () => ({ PAYMENT_PROVIDER_URL: 'http://127.0.0.1:9', CARRIER_URL: 'http://127.0.0.1:9', TEMPORAL_TASK_QUEUE: uniqueId('startup') });

describe('what no wait cures: one line, no stack, its own exit code', () => {
  test.concurrent('the API on a port in use: exit 6 naming API_PORT, the address and the fix', async () => {
    const busy = await busyPort();
    try {
      const { code, lines } = await ended(start('bin/api.ts', { DATABASE_URL: databaseUrl(), TEMPORAL_ADDRESS: temporal(), API_PORT: String(busy.port) }));
      expect(code).toBe(ExitCode.port);
      expect(lines).toEqual([
        `API_PORT: cannot listen on 127.0.0.1:${busy.port}: the port is already in use (another process listens there): stop it, or set API_PORT to a free port`,
      ]);
    } finally {
      busy.close();
    }
  });

  test.concurrent("a worker's metrics port in use: exit 6 naming METRICS_PORT, not an unhandled 'error' event", async () => {
    const busy = await busyPort();
    try {
      const w = start('bin/worker.ts', { ...workerBase(), DATABASE_URL: databaseUrl(), TEMPORAL_ADDRESS: temporal(), METRICS_PORT: String(busy.port) });
      const { code, lines } = await ended(w);
      expect(code).toBe(ExitCode.port);
      expect(lines).toEqual([
        `METRICS_PORT: cannot listen on 127.0.0.1:${busy.port}: the port is already in use (another process listens there): stop it, or set METRICS_PORT to a free port`,
      ]);
      expect(w.stdout()).not.toContain('worker ready');
    } finally {
      busy.close();
    }
  });

  test.concurrent('an unknown namespace: the API and a worker exit 5 naming it, where it was looked for and how to create it', async () => {
    const env = { DATABASE_URL: databaseUrl(), TEMPORAL_ADDRESS: temporal(), TEMPORAL_NAMESPACE: 'no-such-namespace', METRICS_PORT: '0' };
    const [api, worker] = await Promise.all([
      ended(start('bin/api.ts', { ...env, API_PORT: '0' })),
      ended(start('bin/worker.ts', { ...workerBase(), ...env })),
    ]);
    const line =
      `TEMPORAL_NAMESPACE: namespace "no-such-namespace" does not exist on Temporal at ${temporal()}: ` +
      'create it (temporal operator namespace create --namespace no-such-namespace) or set TEMPORAL_NAMESPACE to one that exists';
    expect(api).toEqual({ code: ExitCode.namespace, lines: [line] });
    expect(worker).toEqual({ code: ExitCode.namespace, lines: [line] });
  });

  test.concurrent('migrate: a database that cannot be reached, after --wait, and one that does not exist, at once: exit 3', async () => {
    const port = await deadPort();
    const [down, missing] = await Promise.all([
      ended(start('bin/migrate.ts', { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/sagaflow` }, ['--wait', '1'])),
      ended(start('bin/migrate.ts', { DATABASE_URL: withDatabase(databaseUrl(), 'no_such_database') })),
    ]);
    expect(down.code).toBe(ExitCode.database);
    // The retries it made, then the one line.
    expect(down.lines.at(-1)).toMatch(
      new RegExp(`^migrations: PostgreSQL could not be reached for 1 s \\(\\d+ attempts\\); last error: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\. Start it, or set DATABASE_URL to where it runs$`),
    );
    expect(down.lines.join('\n')).not.toMatch(/\n\s+at /);
    expect(missing.code).toBe(ExitCode.database);
    expect(missing.lines).toEqual([
      expect.stringMatching(/^migrations on PostgreSQL at [^ ]+\/no_such_database: database "no_such_database" does not exist \(SQLSTATE 3D000\); fix DATABASE_URL or the database, then start again$/),
    ]);
  });
});

describe('what is down is waited for: live at once, not ready until it answers, and why', () => {
  test.concurrent('the API with PostgreSQL and Temporal unreachable listens at once, says what it waits for, and serves once both answer', async () => {
    const [dbPort, temporalPort, apiPort] = await Promise.all([deadPort(), deadPort(), deadPort()]);
    const real = new URL(databaseUrl());
    const api = start('bin/api.ts', {
      DATABASE_URL: withHostPort(databaseUrl(), '127.0.0.1', dbPort),
      TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
      API_PORT: String(apiPort),
    });
    const url = `http://127.0.0.1:${apiPort}`;
    await until('the API to listen', async () => ((await get(`${url}/healthz`)).status === 200 ? true : undefined));
    expect(await get(`${url}/healthz`)).toMatchObject({ status: 200, body: { status: 'ok' } });
    // Not ready, naming both (where they run stays private), with Retry-After.
    const waiting = await until('both failures to be named', async () => {
      const r = await get(`${url}/readyz`);
      const checks = r.body.checks as Record<string, string>;
      return /unreachable/.test(checks.database ?? '') && /unreachable/.test(checks.temporal ?? '') ? r : undefined;
    });
    expect(waiting).toMatchObject({ status: 503, retryAfter: '2', body: { status: 'not ready' } });
    expect(Object.keys(waiting.body.checks as object).sort()).toEqual(['database', 'temporal']);
    // A route that needs them answers 503 with Retry-After, not a 500 or a hang.
    const order = await get(`${url}/orders/o-1`);
    expect(order).toMatchObject({ status: 503, retryAfter: '2', body: { detail: 'the API is starting: waiting for database and temporal' } });
    // The log names each at warn, with where it is looked for.
    expect(api.stdout()).toMatch(new RegExp(`"level":"warn".*"msg":"PostgreSQL at 127\\.0\\.0\\.1:${dbPort}[^"]* unreachable; waiting for it"`));
    expect(api.stdout()).toMatch(new RegExp(`"level":"warn".*"msg":"Temporal at 127\\.0\\.0\\.1:${temporalPort} unreachable; waiting for it"`));
    expect(api.child.exitCode).toBeNull();

    // Both come up (relays to the real ones on the ports it was given): ready, and the routes serve.
    const relays = [relay(dbPort, real.hostname, Number(real.port || 5432)), relay(temporalPort, ...hostPort(temporal()))];
    try {
      await until('the API to be ready', async () => ((await get(`${url}/readyz`)).status === 200 ? true : undefined), 60_000);
      expect(await get(`${url}/readyz`)).toEqual({ status: 200, retryAfter: null, body: { status: 'ready', checks: { database: 'ok', temporal: 'ok' } } });
      expect((await get(`${url}/orders/o-1`)).status).toBe(401);
      expect(api.stdout()).toContain('"msg":"api ready"');
      api.child.kill('SIGTERM');
      expect(await api.exited).toBe(0);
    } finally {
      for (const r of relays) r.close();
    }
  });

  test.concurrent('a worker with PostgreSQL unreachable is live but not ready, names it, and never says "worker ready"', async () => {
    const [dbPort, metricsPort] = await Promise.all([deadPort(), deadPort()]);
    const w = start('bin/worker.ts', {
      ...workerBase(),
      DATABASE_URL: withHostPort(databaseUrl(), '127.0.0.1', dbPort),
      TEMPORAL_ADDRESS: temporal(),
      METRICS_PORT: String(metricsPort),
    });
    const url = `http://127.0.0.1:${metricsPort}`;
    // Temporal answers (its check leaves the list); the database stays named.
    const waiting = await until('the database alone to be named', async () => {
      const r = await get(`${url}/readyz`);
      const checks = r.body.checks as Record<string, string>;
      return /unreachable/.test(checks.database ?? '') && !('temporal' in checks) ? r : undefined;
    });
    expect(waiting).toEqual({
      status: 503,
      retryAfter: null,
      body: {
        status: 'not ready',
        checks: { database: expect.stringMatching(new RegExp(`^PostgreSQL at 127\\.0\\.0\\.1:${dbPort}.* unreachable: connect ECONNREFUSED`)), worker: 'starting' },
      },
    });
    expect((await get(`${url}/healthz`)).status).toBe(200);
    expect(w.stdout()).toMatch(new RegExp(`"level":"warn".*"msg":"PostgreSQL at 127\\.0\\.0\\.1:${dbPort}[^"]* unreachable; waiting for it"`));
    expect(w.stdout()).not.toContain('worker ready');
    w.child.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    expect(w.stdout()).toContain('signal during start-up: stopped before polling');
  });
});

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

function withHostPort(url: string, host: string, port: number): string {
  const u = new URL(url);
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

function hostPort(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i), Number(address.slice(i + 1))];
}

/** A TCP relay from 127.0.0.1:port to host:target: the dependency "comes up" on the port given. */
function relay(port: number, host: string, target: number): { close(): void } {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(target, host);
    sockets.add(inbound).add(outbound);
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  server.listen(port, '127.0.0.1');
  return {
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
