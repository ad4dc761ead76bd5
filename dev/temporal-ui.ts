import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, waitFor } from '../src/ports';
import { buildTemporalProgram, isExecutable } from './go-build';
import { serverCacheDir } from './temporal-cluster';
import { spawnTied } from '../src/tied-spawn';

/**
 * Temporal's Web UI for a self-hosted cluster: the UI server (with the UI's assets
 * built in) from its Go module, the same version the Temporal CLI embeds in its dev
 * server, pointed at the cluster's frontend address.
 */
export const TEMPORAL_UI_VERSION = 'v2.42.1'; // pinned in tools/temporal/go.mod
const UI_MODULE = 'github.com/temporalio/ui-server/v2';

export function uiServerPath(): string {
  return path.join(path.dirname(serverCacheDir()), `temporal-ui-server-${TEMPORAL_UI_VERSION}`, 'server');
}

/** The UI server, built once from tools/temporal into the cache (with progress). */
export async function ensureUiServer(log: (m: string) => void): Promise<string | undefined> {
  const out = uiServerPath();
  if (isExecutable(out)) return out;
  const ok = await buildTemporalProgram({
    what: 'the Temporal Web UI',
    pkg: `${UI_MODULE}/cmd/server`,
    version: TEMPORAL_UI_VERSION,
    output: out,
    takes: 'seconds after the Temporal CLI',
    log,
  });
  return ok ? out : undefined;
}

export interface TemporalUi {
  url: string;
  stop(): Promise<void>;
}

export async function startTemporalUi(o: {
  server: string;
  temporalAddress: string;
  namespace: string;
  stateDir: string;
  port?: number;
  /** A codec server the UI decodes payloads through. */
  codecEndpoint?: string;
  log: (m: string) => void;
}): Promise<TemporalUi> {
  const port = o.port ?? (await freePort());
  const configDir = path.join(o.stateDir, 'config');
  fs.mkdirSync(configDir, { recursive: true });
  fs.writeFileSync(
    path.join(configDir, 'development.yaml'),
    [
      `temporalGrpcAddress: ${o.temporalAddress}`,
      'host: 127.0.0.1',
      `port: ${port}`,
      'enableUi: true',
      `defaultNamespace: ${o.namespace}`,
      'notifyOnNewVersion: false',
      'auth:',
      '  enabled: false',
      ...(o.codecEndpoint ? ['codec:', `  endpoint: ${o.codecEndpoint}`] : []),
      '',
    ].join('\n'),
  );
  const out = fs.openSync(path.join(o.stateDir, 'ui-server.log'), 'a');
  const child: ChildProcess = spawnTied(o.server, ['--root', o.stateDir, '--config', 'config', '--env', 'development', 'start'], {
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out); // the child has its own copy
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  try {
    await waitFor(`the Temporal Web UI at ${url}`, 30_000, async () => {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode} (see ${path.join(o.stateDir, 'ui-server.log')})`);
      const res = await fetch(`${url}/api/v1/settings`);
      if (!res.ok) throw new Error(`GET /api/v1/settings: ${res.status}`);
    });
  } catch (err) {
    await stop();
    throw err;
  }
  o.log(`Temporal Web UI: ${url} (on ${o.temporalAddress})`);
  return { url, stop };
}
