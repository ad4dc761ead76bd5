import { InterceptingCall, Metadata, status, type Interceptor } from '@grpc/grpc-js';
import { defaultGrpcRetryOptions, makeGrpcRetryInterceptor, type ConnectionOptions } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnectionOptions } from '@temporalio/worker';
import { ConfigError } from './config';
import { patiently } from './patiently';

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
export function connectPatiently<C>(
  connect: () => Promise<C>,
  opts: { log: (line: Record<string, unknown>) => void; signal?: AbortSignal },
): Promise<C> {
  return patiently('Temporal', connect, opts);
}

/** The calls closedConnectionGuard has seen: every attempt of one call passes the same options object. */
const attempted = new WeakSet<object>();

/**
 * Ends a call whose retry finds its connection closed, instead of letting it throw.
 *
 * The SDK's retry interceptor waits between attempts on a timer, and
 * `Connection.close()` does not clear that timer. When it fires after the close,
 * opening the next attempt throws "Channel has been shut down" inside the timer:
 * an uncaught exception that kills the process, and the caller's promise never
 * settles. That is what happens when the API drains on SIGTERM while a readiness
 * probe is retrying an unreachable Temporal. Placed inside the retry interceptor,
 * this guard turns that throw into a CANCELLED status, which the retry
 * interceptor does not retry, so the caller gets a rejection. (A call made
 * after the close throws at its first attempt, in the caller's own call, and
 * is rejected without the guard.)
 */
export const closedConnectionGuard: Interceptor = (options, nextCall) => {
  if (!attempted.has(options)) {
    // The first attempt runs in the caller's own call: a throw already reaches the caller as a rejection.
    attempted.add(options);
    return new InterceptingCall(nextCall(options));
  }
  try {
    return new InterceptingCall(nextCall(options));
  } catch (err) {
    const message = (err as Error).message;
    // Any other failure to open a call ends it too, as INTERNAL, which is not retried either.
    const closed = /shut down/i.test(message);
    const code = closed ? status.CANCELLED : status.INTERNAL;
    const details = closed ? `the connection to Temporal is closed (${message})` : `the call could not be opened (${message})`;
    return new InterceptingCall({
      start(_metadata, listener) {
        setImmediate(() => listener?.onReceiveStatus?.({ code, details, metadata: new Metadata() }));
      },
      sendMessage() {},
      sendMessageWithContext() {},
      startRead() {},
      halfClose() {},
      cancelWithStatus() {},
      getPeer: () => '',
      getAuthContext: () => null,
    });
  }
};

/**
 * Options for a client `Connection` that is safe to close while calls are
 * retrying: the SDK's default retries, with closedConnectionGuard inside them.
 * Interceptors the caller passes take the place of the default retries.
 */
export function clientConnectionOptions<T extends ConnectionOptions>(options: T): T & { interceptors: Interceptor[] } {
  const retries = options.interceptors ?? [makeGrpcRetryInterceptor(defaultGrpcRetryOptions())];
  return { ...options, interceptors: [...retries, closedConnectionGuard] };
}
