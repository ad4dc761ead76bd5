import { type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { spawnTied } from '../../src/tied-spawn';
import type { OrderInput } from '../../workflows/order/types';

/**
 * The benchmark's processes: each variant's workers (and, for DBOS and the eager start, the
 * process that starts its sagas) run as OS processes of their own, as they are deployed, apart
 * from the driver. Processes the driver sends sagas to speak a small protocol over Node's IPC
 * channel: `run` (an order) → `done` (its outcome).
 */

export type ToChild = { type: 'run'; id: number; order: OrderInput; workflowId: string };
export type FromChild =
  | { type: 'ready' }
  | { type: 'done'; id: number; error?: string; eagerlyStarted?: boolean };

const REPO = path.resolve(__dirname, '../..');

/** Children still running: killed if this process exits first (one listener for them all). */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface BenchProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** The last lines it wrote to stderr and stdout (for an error message). */
  output(): string;
  /** Whether it has exited, and how. */
  exited(): string | undefined;
  stop(): Promise<void>;
}

/** A TypeScript entry point of the project as a process of its own (ts-node, as the npm scripts run them). */
export function spawnEntry(
  name: string,
  entry: string,
  args: string[],
  env: Record<string, string | undefined>,
  ipc = false,
  /** Options for node itself (`--cpu-prof`, which NODE_OPTIONS does not take). */
  nodeArgs: string[] = [],
): BenchProcess {
  return spawnProgram(name, process.execPath, [...nodeArgs, '-r', 'ts-node/register/transpile-only', path.join(REPO, entry), ...args], env, ipc);
}

/** A program as a process of its own, tied to this one (it dies with it). */
export function spawnProgram(name: string, command: string, args: string[], env: Record<string, string | undefined>, ipc = false): BenchProcess {
  const child = spawnTied(command, args, {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    deathSignal: 'TERM',
  });
  let out = '';
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  live.add(child);
  child.once('exit', () => live.delete(child));
  const exited = () =>
    child.exitCode !== null || child.signalCode !== null ? (child.signalCode ? `killed by ${child.signalCode}` : `exit code ${child.exitCode}`) : undefined;
  return {
    name,
    pid: child.pid!,
    child,
    output: () => out,
    exited,
    async stop() {
      if (exited()) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(timer);
    },
  };
}

/** Waits until `ready` resolves, failing early (with its output) if the process exits first. */
export async function untilReady(p: BenchProcess, what: string, timeoutMs: number, ready: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const gone = p.exited();
    if (gone) throw new Error(`${what} ${gone} before it was ready:\n${p.output()}`);
    try {
      return await ready();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms (${(err as Error).message}):\n${p.output()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A process that runs sagas the driver sends it over IPC (DBOS, the eager starter). */
export interface SagaProcess extends BenchProcess {
  run(order: OrderInput, workflowId: string): Promise<{ eagerlyStarted?: boolean }>;
}

export async function spawnSagaProcess(
  name: string,
  entry: string,
  args: string[],
  env: Record<string, string | undefined>,
  timeoutMs = 180_000,
): Promise<SagaProcess> {
  const p = spawnEntry(name, entry, args, env, true);
  const waiting = new Map<number, { resolve(v: { eagerlyStarted?: boolean }): void; reject(e: Error): void }>();
  let ready = false;
  p.child.on('message', (m: FromChild) => {
    if (m.type === 'ready') ready = true;
    else if (m.type === 'done') {
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.error !== undefined) w?.reject(new Error(m.error));
      else w?.resolve({ eagerlyStarted: m.eagerlyStarted });
    }
  });
  p.child.once('exit', () => {
    for (const w of waiting.values()) w.reject(new Error(`${name} ${p.exited()}:\n${p.output()}`));
    waiting.clear();
  });
  await untilReady(p, name, timeoutMs, async () => {
    if (!ready) throw new Error('not ready yet');
  });
  let next = 0;
  return {
    ...p,
    run(order, workflowId) {
      const id = next++;
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject });
        p.child.send({ type: 'run', id, order, workflowId } satisfies ToChild);
      });
    },
  };
}

/** The child's side: answers `run` messages with `handle`, and says when it is ready. */
export function serveSagas(handle: (order: OrderInput, workflowId: string) => Promise<{ eagerlyStarted?: boolean } | void>): { ready(): void } {
  const send = (m: FromChild) => process.send?.(m);
  process.on('message', (m: ToChild) => {
    if (m.type !== 'run') return;
    handle(m.order, m.workflowId).then(
      (r) => send({ type: 'done', id: m.id, eagerlyStarted: r ? r.eagerlyStarted : undefined }),
      (err: Error) => send({ type: 'done', id: m.id, error: err.message || String(err) }),
    );
  });
  return { ready: () => send({ type: 'ready' }) };
}

/** In a child process: calls `stop` once, on SIGTERM or SIGINT. */
export function onStop(stop: () => void): void {
  let stopped = false;
  const once = () => {
    if (stopped) return;
    stopped = true;
    stop();
  };
  process.once('SIGTERM', once);
  process.once('SIGINT', once);
}

/** A child process's entry: exits 0 when `main` ends, 1 (with the error) when it fails. */
export function runChild(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: Error) => {
      process.stderr.write(`${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
