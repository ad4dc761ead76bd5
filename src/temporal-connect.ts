import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';
import { ConfigError } from './config';

export interface TemporalTarget {
  connectionOptions: NativeConnectionOptions & { address: string };
  namespace: string;
}

/**
 * Where and how to reach Temporal, by the SDK's environment-configuration
 * conventions (`@temporalio/envconfig`): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH,
 * TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_GRPC_META_*,
 * and a TOML profile (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE). The same
 * variables reach a local dev server, a self-hosted cluster or Temporal Cloud.
 */
export function temporalTarget(env: NodeJS.ProcessEnv = process.env, fallbackAddress?: string): TemporalTarget {
  // The whole environment: envconfig also needs HOME / XDG_CONFIG_HOME to find the default profile file.
  const overrideEnvVars = Object.fromEntries(
    Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''),
  );
  const { connectionOptions, namespace } = loadClientConnectConfig({ overrideEnvVars });
  const address = connectionOptions.address ?? fallbackAddress;
  if (!address) throw new Error('no Temporal address: set TEMPORAL_ADDRESS (or a profile in TEMPORAL_CONFIG_FILE)');
  return { connectionOptions: { ...connectionOptions, address }, namespace: namespace ?? 'default' };
}

/** temporalTarget() for a process's start-up: a missing address is a configuration error naming the variable. */
export function temporalTargetOrExplain(env: NodeJS.ProcessEnv = process.env): TemporalTarget {
  try {
    return temporalTarget(env);
  } catch (err) {
    throw new ConfigError([{ variable: 'TEMPORAL_ADDRESS', message: (err as Error).message }]);
  }
}

/**
 * Connects, waiting for a Temporal that is down or restarting instead of exiting:
 * a worker or API started before the server (or during its restart) comes up
 * with it. Retries with backoff (0.5 s doubling to 5 s), telling `log` each
 * time, until it connects or `signal` aborts.
 */
export async function connectPatiently<C>(
  connect: () => Promise<C>,
  opts: { log: (line: Record<string, unknown>) => void; signal?: AbortSignal },
): Promise<C> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await connect();
    } catch (err) {
      if (opts.signal?.aborted) throw err;
      const delayMs = Math.min(5000, 500 * 2 ** Math.min(attempt - 1, 4));
      opts.log({ msg: 'Temporal unreachable; retrying', attempt, delayMs, error: (err as Error).message });
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}
