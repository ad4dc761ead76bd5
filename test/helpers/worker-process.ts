import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { databaseUrl, type TestContext } from './context';

export interface NodeProcess {
  child: ChildProcess;
  /** Resolves when the process prints its ready line. */
  ready: Promise<void>;
  /** Resolves with the exit code (null if killed by a signal). */
  exited: Promise<number | null>;
  output(): string;
}

export interface WorkerProcess extends NodeProcess {
  /** The worker's /metrics URL, from its ready line. */
  metricsUrl(): string | undefined;
}

/** One of the project's entry points as a real process (TypeScript through ts-node), as production runs it. */
export function spawnNode(entry: string, env: Record<string, string>, readyMarker: string, args: string[] = []): NodeProcess {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', path.resolve(__dirname, '../..', entry), ...args], {
    env: { ...process.env, LOG_LEVEL: 'info', METRICS_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const collect = (b: Buffer) => {
    out += b.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    const check = () => {
      if (out.includes(readyMarker)) resolve();
    };
    child.stdout?.on('data', check);
    void exited.then((code) => reject(new Error(`${entry} exited (${code}) before it was ready:\n${out}`)));
  });
  return { child, ready, exited, output: () => out };
}

/** A real worker process (bin/worker.ts). */
export function spawnWorker(env: Record<string, string>, args: string[] = []): WorkerProcess {
  const p = spawnNode('bin/worker.ts', env, '"msg":"worker ready"', args);
  return { ...p, metricsUrl: () => /"metrics":"([^"]+)"/.exec(p.output())?.[1] };
}

/** A DATABASE_URL whose connections use the given schema first, as the test's own pool does. */
export function urlWithSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema},public`);
  return u.toString();
}

/** The environment of a worker (or a pool of them) on the test's schema, services and Temporal. */
export function workerEnv(ctx: Pick<TestContext, 'schema' | 'payment' | 'carrier'>, taskQueue: string): Record<string, string> {
  return {
    DATABASE_URL: urlWithSchema(databaseUrl(), ctx.schema),
    TEMPORAL_ADDRESS: process.env.TEMPORAL_ADDRESS!,
    PAYMENT_PROVIDER_URL: ctx.payment.url,
    CARRIER_URL: ctx.carrier.url,
    TEMPORAL_TASK_QUEUE: taskQueue,
    SHUTDOWN_GRACE_MS: '10000',
  };
}
