import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { freePort, waitFor } from '../src/ports';
import { buildTemporalProgram, isExecutable } from './go-build';
import { spawnTied } from '../src/tied-spawn';
import { SAGA_SEARCH_ATTRIBUTES } from '../workflows/order/search-attributes';

/** The newest Temporal CLI release Go can build as a dependency (later tags carry a replace directive). */
export const TEMPORAL_CLI_VERSION = 'v1.5.1';
/** Its version is pinned in tools/temporal/go.mod, with the server's and the Web UI's. */
const CLI_PACKAGE = 'github.com/temporalio/cli/cmd/temporal';

export type CliSource = 'TEMPORAL_CLI_PATH' | 'PATH' | 'cache' | 'go build' | 'SDK download';

export function cacheDir(): string {
  const base = process.env.SAGAFLOW_CACHE_DIR ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'sagaflow');
  return path.join(base, `temporal-cli-${TEMPORAL_CLI_VERSION}`);
}

/** An executable `cmd` on PATH, or undefined. */
export function onPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, cmd);
    if (dir && isExecutable(candidate)) return candidate;
  }
  return undefined;
}


/**
 * Finds a Temporal CLI: TEMPORAL_CLI_PATH, `temporal` on PATH, the cached build,
 * then (unless allowBuild is false) a fresh build from tools/temporal into the cache, with
 * progress. Returns undefined if none can be had, leaving the SDK's own
 * download as the caller's last resort.
 */
export async function findTemporalCli(opts: { cliPath?: string; allowBuild?: boolean; log?: (m: string) => void } = {}): Promise<
  { path: string; source: CliSource } | undefined
> {
  const log = opts.log ?? (() => undefined);
  const ready = findBuiltTemporalCli(opts.cliPath);
  if (ready) return ready;
  if (opts.allowBuild === false || !onPath('go')) return undefined;
  return (await buildTemporalCli(log)) ? { path: path.join(cacheDir(), 'temporal'), source: 'go build' } : undefined;
}

/** A Temporal CLI that needs no build: TEMPORAL_CLI_PATH, PATH or the cache. */
export function findBuiltTemporalCli(cliPath?: string): { path: string; source: CliSource } | undefined {
  if (cliPath) {
    if (!isExecutable(cliPath)) throw new Error(`TEMPORAL_CLI_PATH=${cliPath} is not an executable file`);
    return { path: cliPath, source: 'TEMPORAL_CLI_PATH' };
  }
  const fromPath = onPath('temporal');
  if (fromPath) return { path: fromPath, source: 'PATH' };
  const cached = path.join(cacheDir(), 'temporal');
  if (isExecutable(cached)) return { path: cached, source: 'cache' };
  return undefined;
}

/**
 * Builds the CLI into the cache from tools/temporal, with a line of progress every
 * `everyMs` and, on failure, Go's last lines and the settings that usually explain it
 * (dev/go-build.ts).
 */
export async function buildTemporalCli(log: (m: string) => void, everyMs = 15_000): Promise<boolean> {
  return buildTemporalProgram({
    what: 'the Temporal CLI',
    pkg: CLI_PACKAGE,
    version: TEMPORAL_CLI_VERSION,
    output: path.join(cacheDir(), 'temporal'),
    takes: 'this takes a few minutes, once',
    log,
    everyMs,
  });
}

/** The dev server's dynamic config that lets a client start a workflow eagerly (`requestEagerStart`). */
const EAGER_START_CONFIG = ['--dynamic-config-value', 'system.enableEagerWorkflowStart=true'];

export interface TemporalServer {
  address: string;
  namespace: string;
  uiUrl?: string;
  /** The server's own Prometheus metrics (`--metrics-port`), for a server this process started. */
  metricsUrl?: string;
  source: CliSource | 'TEMPORAL_ADDRESS';
  stop(): Promise<void>;
  /** For a server this process started: whether it still runs, and how it ended if not. */
  exit?(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

export interface StartTemporalOptions {
  cliPath?: string;
  namespace?: string;
  /** SQLite file that keeps workflows across restarts; in memory when absent. */
  dbFilename?: string;
  ui?: boolean;
  port?: number;
  uiPort?: number;
  /** The port of the server's Prometheus /metrics (any free one when absent). */
  metricsPort?: number;
  /** A codec server the UI decodes payloads through (`--ui-codec-endpoint`). */
  uiCodecEndpoint?: string;
  log?: (m: string) => void;
}

/** Starts the Temporal CLI dev server (a real Temporal server) and waits until it answers. */
export async function startTemporalDevServer(opts: StartTemporalOptions = {}): Promise<TemporalServer> {
  const log = opts.log ?? (() => undefined);
  const namespace = opts.namespace ?? 'default';
  const found = await findTemporalCli({ cliPath: opts.cliPath, log });
  const port = opts.port ?? (await freePort());
  const uiPort = opts.ui ? (opts.uiPort ?? (await freePort())) : undefined;
  const metricsPort = opts.metricsPort ?? (await freePort());
  if (!found) return startWithSdkDownload({ ...opts, namespace, port, uiPort, metricsPort }, log);

  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--namespace', namespace,
    '--log-level', 'error', '--metrics-port', String(metricsPort),
    // Eager workflow start (a start that hands the first workflow task to a worker in the starting
    // process) is off unless the server allows it.
    ...EAGER_START_CONFIG];
  for (const key of SAGA_SEARCH_ATTRIBUTES) args.push('--search-attribute', `${key.name}=Keyword`);
  if (uiPort) args.push('--ui-port', String(uiPort));
  else args.push('--headless');
  if (uiPort && opts.uiCodecEndpoint) args.push('--ui-codec-endpoint', opts.uiCodecEndpoint);
  if (opts.dbFilename) {
    fs.mkdirSync(path.dirname(opts.dbFilename), { recursive: true });
    args.push('--db-filename', opts.dbFilename);
  }
  log(`starting Temporal dev server from ${found.path} (found via ${found.source})`);
  const child: ChildProcess = spawnTied(found.path, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const address = `127.0.0.1:${port}`;
  try {
    await waitFor('Temporal dev server', 60_000, async () => {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}: ${stderr}`);
      const conn = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await conn.workflowService.describeNamespace({ namespace });
      } finally {
        await conn.close();
      }
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    address,
    namespace,
    uiUrl: uiPort ? `http://127.0.0.1:${uiPort}` : undefined,
    metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`,
    source: found.source,
    exit: () => (child.exitCode !== null || child.signalCode !== null ? { code: child.exitCode, signal: child.signalCode } : undefined),
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Last resort, for machines on the open internet: the SDK downloads a CLI release. */
async function startWithSdkDownload(
  opts: StartTemporalOptions & { namespace: string; port: number; uiPort?: number; metricsPort: number },
  log: (m: string) => void,
): Promise<TemporalServer> {
  log('no Temporal CLI found (TEMPORAL_CLI_PATH, PATH, cache, go); trying the SDK download');
  // Loaded lazily: it pulls in the worker's native runtime, which nothing else here needs.
  const { TestWorkflowEnvironment } = await import('@temporalio/testing');
  try {
    const env = await TestWorkflowEnvironment.createLocal({
      server: {
        executable: { type: 'cached-download', downloadDir: cacheDir() },
        ip: '127.0.0.1',
        port: opts.port,
        namespace: opts.namespace,
        dbFilename: opts.dbFilename,
        ui: opts.uiPort !== undefined,
        uiPort: opts.uiPort,
        searchAttributes: SAGA_SEARCH_ATTRIBUTES,
        extraArgs: [
          ...EAGER_START_CONFIG,
          '--metrics-port',
          String(opts.metricsPort),
          ...(opts.uiPort !== undefined && opts.uiCodecEndpoint ? ['--ui-codec-endpoint', opts.uiCodecEndpoint] : []),
        ],
      },
    });
    return {
      address: env.address,
      namespace: opts.namespace,
      uiUrl: opts.uiPort ? `http://127.0.0.1:${opts.uiPort}` : undefined,
      metricsUrl: `http://127.0.0.1:${opts.metricsPort}/metrics`,
      source: 'SDK download',
      stop: () => env.teardown(),
    };
  } catch (err) {
    throw new Error(
      `No Temporal server could be started: ${(err as Error).message}\n` +
        `Install one of: the Temporal CLI on PATH (or TEMPORAL_CLI_PATH=/path/to/temporal), ` +
        `Go (then the CLI ${TEMPORAL_CLI_VERSION} is built from tools/temporal on first start), ` +
        `or set TEMPORAL_ADDRESS to a running server.`,
    );
  }
}
