import { status } from '@grpc/grpc-js';
import { ExitCode, StartupError } from './config';
import { isConnectionError } from './db/pool';
import { sleepUnlessAborted, startupBackoffMs } from './patiently';

/**
 * What the API and the workers wait for before they serve, and how they tell a dependency that is
 * not up yet (wait, and say so in /readyz and at warn) from one that is wrong (one line naming the
 * cause and the fix, and the exit code for it: docs/operations.md, "Exit codes").
 */

/** `PostgreSQL at host:port/db` from a connection URL, without its credentials. */
export function databaseLabel(url: string): string {
  try {
    const u = new URL(url);
    const host = u.hostname || u.searchParams.get('host') || 'localhost';
    return `PostgreSQL at ${host}:${u.port || '5432'}${u.pathname.length > 1 ? u.pathname : ''}`;
  } catch {
    return 'PostgreSQL at DATABASE_URL';
  }
}

/** The PostgreSQL error that no wait will cure (a wrong password, a missing database, no permission), as one line. */
export function databaseProblem(what: string, err: unknown): StartupError {
  const e = err as { message?: string; code?: unknown };
  const code = typeof e?.code === 'string' ? ` (SQLSTATE ${e.code})` : '';
  return new StartupError(`${what}: ${e?.message ?? String(err)}${code}; fix DATABASE_URL or the database, then start again`, ExitCode.database);
}

/** A gRPC status that may pass by itself: the server is down, restarting or slow. */
export function temporalTransient(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED || code === status.CANCELLED) return true;
  // The native connection fails to connect with a transport error that has no status code.
  return code === undefined && /transport|connect|unavailable|deadline/i.test(String((err as Error)?.message));
}

/** The answer to DescribeNamespace, as the start-up error it is when the namespace is missing or refused. */
export function namespaceProblem(err: unknown, namespace: string, address: string): StartupError {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === status.NOT_FOUND) {
    return new StartupError(
      `TEMPORAL_NAMESPACE: namespace "${namespace}" does not exist on Temporal at ${address}: ` +
        `create it (temporal operator namespace create --namespace ${namespace}) or set TEMPORAL_NAMESPACE to one that exists`,
      ExitCode.namespace,
    );
  }
  const message = (err as Error)?.message ?? String(err);
  if (code === status.UNAUTHENTICATED || code === status.PERMISSION_DENIED) {
    return new StartupError(
      `Temporal at ${address} refused namespace "${namespace}" to these credentials: ${message}; check TEMPORAL_API_KEY or the TLS client certificate`,
      ExitCode.temporal,
    );
  }
  return new StartupError(`Temporal at ${address}: ${message}`, ExitCode.temporal);
}

export interface Waiting {
  /** The readiness check's name (`database`, `temporal`): kept in `pending` until the dependency answers. */
  name: string;
  /** Who, for the log and the reasons: `PostgreSQL at db:5432/sagaflow`, `Temporal at temporal:7233`. */
  what: string;
  /** One try; resolves once the dependency serves. */
  attempt: () => Promise<void>;
  /** Whether a failure may pass by itself (wait and try again); anything else is `fatal`. */
  transient: (err: unknown) => boolean;
  /** The start-up error a failure that will not pass by itself is. */
  fatal: (err: unknown) => StartupError;
}

/**
 * Tries `dep` until it answers, with backoff from 0.5 s to 5 s and no time limit: a process
 * started before its database or Temporal comes up with them. While it waits, `pending[name]`
 * says why (for /readyz) and each failure is logged at warn, naming the dependency and where it
 * is. Resolves true once it answers, false if `signal` aborted the wait; rejects with `fatal(err)`
 * for a failure no wait cures.
 */
export async function awaitDependency(
  dep: Waiting,
  pending: Record<string, string>,
  opts: { log: (line: Record<string, unknown>) => void; signal?: AbortSignal },
): Promise<boolean> {
  pending[dep.name] ??= `waiting for ${dep.what}`;
  for (let n = 1; ; n++) {
    if (opts.signal?.aborted) return false;
    try {
      await dep.attempt();
      delete pending[dep.name];
      if (n > 1) opts.log({ level: 'info', msg: `${dep.what} answers`, attempts: n });
      return true;
    } catch (err) {
      if (opts.signal?.aborted) return false;
      if (!dep.transient(err)) throw dep.fatal(err);
      const error = (err as Error)?.message ?? String(err);
      pending[dep.name] = `${dep.what} unreachable: ${error}`;
      const delayMs = startupBackoffMs(n);
      opts.log({ level: 'warn', msg: `${dep.what} unreachable; waiting for it`, attempt: n, delayMs, error });
      await sleepUnlessAborted(delayMs, opts.signal);
    }
  }
}

/** A database dependency: `attempt` fails transiently while PostgreSQL cannot be reached. */
export function databaseDependency(databaseUrl: string, attempt: () => Promise<void>): Waiting {
  const what = databaseLabel(databaseUrl);
  return { name: 'database', what, attempt, transient: isConnectionError, fatal: (err) => databaseProblem(what, err) };
}

/** DescribeNamespace with a deadline; a call that ran out of it says so in words, its status code kept. */
export async function describeNamespaceWithin(
  connection: { withDeadline<R>(deadline: number, fn: () => Promise<R>): Promise<R>; workflowService: { describeNamespace(req: { namespace: string }): Promise<unknown> } },
  namespace: string,
  ms: number,
): Promise<void> {
  try {
    await connection.withDeadline(Date.now() + ms, () => connection.workflowService.describeNamespace({ namespace }));
  } catch (err) {
    if ((err as { code?: unknown }).code === status.DEADLINE_EXCEEDED) {
      throw Object.assign(new Error(`no answer within ${ms / 1000} s`), { code: status.DEADLINE_EXCEEDED });
    }
    throw err;
  }
}
