import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';

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
  const overrideEnvVars = Object.fromEntries(
    Object.entries(env).filter((e): e is [string, string] => e[0].startsWith('TEMPORAL_') && e[1] !== undefined && e[1] !== ''),
  );
  const { connectionOptions, namespace } = loadClientConnectConfig({ overrideEnvVars });
  const address = connectionOptions.address ?? fallbackAddress;
  if (!address) throw new Error('no Temporal address: set TEMPORAL_ADDRESS (or a profile in TEMPORAL_CONFIG_FILE)');
  return { connectionOptions: { ...connectionOptions, address }, namespace: namespace ?? 'default' };
}
