import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../src/ports';
import type { OrderInput } from '../../workflows/order/types';
import { orderWorkflowId } from '../../workflows/order/ids';
import { spawnEntry, spawnProgram, untilReady, type BenchProcess } from './processes';

/** Matches RESTATE_WORKFLOW of ./restate-endpoint.ts (not imported: that module is the endpoint's process). */
const WORKFLOW = 'benchOrderSaga';

/** The restate-server binary of the platform package @restatedev/restate-server installs, if any. */
function restateServerPath(): string | undefined {
  try {
    return require.resolve(`@restatedev/restate-server-${os.platform()}-${os.arch()}/bin/restate-server`);
  } catch {
    return undefined;
  }
}

/** Undefined if the Restate variant can run here, else why not. */
export function restateAvailable(): string | undefined {
  return restateServerPath() ? undefined : `no restate-server for ${os.platform()}-${os.arch()} in node_modules (@restatedev/restate-server)`;
}

export interface RunningRestate {
  server: BenchProcess;
  endpoint: BenchProcess;
  /** One saga through the ingress, from the call to its result. */
  run(order: OrderInput): Promise<void>;
}

/**
 * A restate-server of the run's own (its data in a directory of the run's, every port free) and
 * the service endpoint (./restate-endpoint.ts) in a process of its own, registered through the
 * admin API.
 */
export async function startRestate(opts: { env: Record<string, string | undefined>; dir: string; log: (m: string) => void }): Promise<RunningRestate> {
  const binary = restateServerPath();
  if (!binary) throw new Error(restateAvailable());
  const [fabric, admin, ingress, endpointPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const dataDir = path.join(opts.dir, 'restate');
  fs.mkdirSync(dataDir, { recursive: true });
  const server = spawnProgram('restate-server', binary, ['--base-dir', dataDir, '--listen-mode', 'tcp', '--no-logo', '--node-name', 'bench'], {
    RESTATE_BIND_ADDRESS: `127.0.0.1:${fabric}`,
    RESTATE_ADVERTISED_ADDRESS: `http://127.0.0.1:${fabric}`,
    RESTATE_ADMIN__BIND_ADDRESS: `127.0.0.1:${admin}`,
    RESTATE_INGRESS__BIND_ADDRESS: `127.0.0.1:${ingress}`,
    RESTATE_LOG_FILTER: 'error',
    // No update check or telemetry: the machine may have no way out.
    DO_NOT_TRACK: 'true',
  });
  const endpoint = spawnEntry('restate endpoint', 'dev/bench/restate-endpoint.ts', [], {
    ...opts.env,
    RESTATE_ENDPOINT_PORT: String(endpointPort),
    RESTATE_LOGGING: 'ERROR',
  });
  try {
    await untilReady(server, 'restate-server', 60_000, async () => {
      const res = await fetch(`http://127.0.0.1:${admin}/health`);
      if (!res.ok) throw new Error(`admin health ${res.status}`);
    });
    // Registration asks the endpoint for its services: it succeeds once the endpoint listens.
    await untilReady(endpoint, 'restate endpoint', 120_000, async () => {
      const res = await fetch(`http://127.0.0.1:${admin}/deployments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ uri: `http://127.0.0.1:${endpointPort}`, force: true }),
      });
      if (!res.ok) throw new Error(`registration ${res.status}: ${await res.text()}`);
    });
  } catch (err) {
    await Promise.allSettled([endpoint.stop(), server.stop()]);
    throw err;
  }
  opts.log(`Restate: server ${server.pid} (ingress 127.0.0.1:${ingress}), endpoint ${endpoint.pid}`);
  return {
    server,
    endpoint,
    async run(order) {
      const res = await fetch(`http://127.0.0.1:${ingress}/${WORKFLOW}/${encodeURIComponent(orderWorkflowId(order.orderId))}/run`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(order),
        signal: AbortSignal.timeout(60_000),
      }).catch((err: Error) => {
        throw new Error(`${order.orderId}: Restate ingress: ${err.message} (${String((err as { cause?: unknown }).cause)})\nendpoint: ${endpoint.output()}\nserver: ${server.output()}`);
      });
      const body = await res.text();
      if (!res.ok) throw new Error(`${order.orderId}: Restate ${res.status} ${body}`);
      const result = JSON.parse(body) as { status?: string };
      if (result.status !== 'completed') throw new Error(`${order.orderId}: ${body}`);
    },
  };
}
