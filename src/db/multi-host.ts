import { Client, Pool, type ClientConfig, type PoolClient, type PoolConfig } from 'pg';

/**
 * A database URL naming several servers, as libpq spells it:
 * `postgresql://user@h1:5432,h2:5432/db?target_session_attrs=read-write`.
 * node-postgres connects to one host only, so this layer picks the host: every new
 * connection goes to the server that accepts writes now (a primary; never a standby
 * or a server in read-only mode), and a server that stops being one is left.
 */
export interface MultiHostTarget {
  hosts: HostPort[];
  /** The same URL with one host and without target_session_attrs, for pg to read the rest from. */
  connectionString: string;
  /** Each probe's connect timeout: the URL's connect_timeout (seconds, as libpq), else 5 s. */
  connectTimeoutMs: number;
}

export interface HostPort {
  host: string;
  port: number;
}

/** libpq's values that mean "a server that accepts writes". */
const READ_WRITE = ['read-write', 'primary'];

/**
 * The URL's hosts when it names several or sets target_session_attrs; undefined for a plain
 * one-host URL, which goes to pg as it is. Throws on a target_session_attrs other than
 * read-write (sagaflow writes on every connection) and on a malformed host list.
 */
export function parseMultiHostUrl(url: string): MultiHostTarget | undefined {
  const m = /^(postgres(?:ql)?:\/\/)(?:([^@/?#]*)@)?([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?$/.exec(url.trim());
  if (!m) return undefined;
  const [, scheme, userinfo, hostList = '', path = '', query = ''] = m;
  const params = new URLSearchParams(query);
  const attrs = params.get('target_session_attrs');
  if (!hostList.includes(',') && attrs === null) return undefined;
  if (attrs !== null && !READ_WRITE.includes(attrs)) {
    throw new Error(`target_session_attrs=${attrs}: sagaflow writes on every connection, so only read-write (or primary) is supported`);
  }
  const hosts = hostList.split(',').map(parseHostPort);
  params.delete('target_session_attrs');
  const timeout = Number(params.get('connect_timeout'));
  const rest = params.toString();
  const first = hosts[0]!;
  return {
    hosts,
    connectionString: `${scheme}${userinfo !== undefined ? `${userinfo}@` : ''}${formatHostPort(first)}${path}${rest ? `?${rest}` : ''}`,
    connectTimeoutMs: Number.isFinite(timeout) && timeout > 0 ? Math.max(2, timeout) * 1000 : 5000,
  };
}

function parseHostPort(part: string): HostPort {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(part);
  if (!m) throw new Error(`invalid host in the database URL: "${part}" (host, host:port or [v6]:port)`);
  const host = m[1]!.startsWith('[') ? m[1]!.slice(1, -1) : decodeURIComponent(m[1]!);
  return { host, port: m[2] ? Number(m[2]) : 5432 };
}

function formatHostPort(h: HostPort): string {
  return `${h.host.includes(':') ? `[${h.host}]` : encodeURIComponent(h.host)}:${h.port}`;
}

export const describeHost = (h: HostPort): string => `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`;

/**
 * No server accepted writes: every host refused the connection, was a standby, or was read-only.
 * SQLSTATE 08001 (sqlclient_unable_to_establish_sqlconnection), so it reads as any other
 * connection failure: the API answers 503, start-up waits, activities retry.
 */
export class NoWritableHostError extends Error {
  override name = 'NoWritableHostError';
  readonly code = '08001';
  constructor(readonly reasons: { host: HostPort; reason: string }[]) {
    super(`no PostgreSQL server accepts writes: ${reasons.map((r) => `${describeHost(r.host)} (${r.reason})`).join(', ')}`);
  }
}

/** The server that was the primary no longer is one (or is gone): a new connection looks for it again. */
class StaleHostError extends Error {
  override name = 'StaleHostError';
  readonly code: string;
  constructor(host: HostPort, reason: string, code = '08001') {
    super(`${describeHost(host)} no longer accepts writes (${reason}); looking for the primary again`);
    this.code = code;
  }
}

/** An error after which another try may reach the new primary at once. */
const RETRY_ELSEWHERE = Symbol('retry elsewhere');
function markRetryable<E>(err: E): E {
  if (err && typeof err === 'object') (err as Record<symbol, boolean>)[RETRY_ELSEWHERE] = true;
  return err;
}
function isRetryable(err: unknown): boolean {
  return Boolean(err && typeof err === 'object' && (err as Record<symbol, unknown>)[RETRY_ELSEWHERE]);
}

/**
 * What a process knows of one multi-host target: the last server found writable, and the
 * search under way (many connections opened at once after a failover share one).
 */
interface HostCache {
  primary: HostPort | undefined;
  search: Promise<HostPort> | undefined;
}
const caches = new Map<string, HostCache>();
function cacheFor(target: MultiHostTarget): HostCache {
  const key = `${target.connectionString}|${target.hosts.map(describeHost).join(',')}`;
  let cache = caches.get(key);
  if (!cache) caches.set(key, (cache = { primary: undefined, search: undefined }));
  return cache;
}

const WRITABLE_SQL = "SELECT pg_is_in_recovery() AS in_recovery, current_setting('transaction_read_only') AS read_only";

/** Why this connection's server does not take writes, or undefined when it does. */
async function notWritable(client: Client): Promise<string | undefined> {
  const row = (await client.query<{ in_recovery: boolean; read_only: string }>(WRITABLE_SQL)).rows[0];
  if (row?.in_recovery) return 'in recovery: a standby';
  if (row?.read_only !== 'off') return 'read-only (default_transaction_read_only)';
  return undefined;
}

/** Asks every host at once, with its own short connection, and answers the first (in URL order) that takes writes. */
async function searchPrimary(target: MultiHostTarget): Promise<HostPort> {
  const answers = await Promise.all(
    target.hosts.map(async (host) => {
      const probe = new Client({ connectionString: target.connectionString, connectionTimeoutMillis: target.connectTimeoutMs });
      probe.host = host.host;
      probe.port = host.port;
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        return { host, reason: await notWritable(probe) };
      } catch (err) {
        return { host, reason: (err as Error).message || String(err) };
      } finally {
        await probe.end().catch(() => undefined);
      }
    }),
  );
  const found = answers.find((a) => a.reason === undefined);
  if (!found) throw new NoWritableHostError(answers.map((a) => ({ host: a.host, reason: a.reason! })));
  return found.host;
}

function findPrimary(target: MultiHostTarget, cache: HostCache): Promise<HostPort> {
  cache.search ??= searchPrimary(target).finally(() => (cache.search = undefined));
  return cache.search;
}

/**
 * A pg Client class that connects to the target's writable server: the one last found, else the
 * one a search finds now, and keeps the connection only once the server itself says it takes writes.
 */
export function multiHostClientClass(target: MultiHostTarget): typeof Client {
  const cache = cacheFor(target);
  return class MultiHostClient extends Client {
    constructor(config?: string | ClientConfig) {
      super(typeof config === 'string' || !config ? { connectionString: target.connectionString } : { ...config, connectionString: target.connectionString });
      // Errors on a live connection (the server shut down, the socket reset) make the next connection look again.
      this.on('error', () => {
        if (cache.primary && cache.primary.host === this.host && cache.primary.port === this.port) cache.primary = undefined;
      });
    }

    override connect(): Promise<Client>;
    override connect(callback: ((err: Error) => void) | ((err: null, c: Client) => void)): void;
    override connect(callback?: ((err: Error) => void) | ((err: null, c: Client) => void)): Promise<Client> | void {
      const connecting = this.connectWritable();
      if (!callback) return connecting;
      connecting.then(
        (c) => (callback as (err: null, c: Client) => void)(null, c),
        (err: Error) => (callback as (err: Error) => void)(err),
      );
    }

    private async connectWritable(): Promise<Client> {
      const known = cache.primary;
      const host = known ?? (await findPrimary(target, cache));
      this.host = host.host;
      this.port = host.port;
      const forget = () => {
        if (cache.primary === host) cache.primary = undefined;
      };
      try {
        await super.connect();
      } catch (err) {
        forget();
        throw known ? markRetryable(err) : err;
      }
      let reason: string | undefined;
      try {
        reason = await notWritable(this);
      } catch (err) {
        forget();
        await this.end().catch(() => undefined);
        throw markRetryable(err);
      }
      if (reason) {
        forget();
        await this.end().catch(() => undefined);
        throw markRetryable(new StaleHostError(host, reason));
      }
      cache.primary = host;
      return this;
    }
  };
}

/**
 * A pool over the target's writable server. A connection that fails because the server last
 * known as primary is gone or no longer one is tried again at once (up to once per host): the
 * next try searches every host, so a failover costs the requests in flight, not the next ones.
 */
export function createMultiHostPool(target: MultiHostTarget, config: PoolConfig): Pool {
  const MultiHostClient = multiHostClientClass(target);
  class MultiHostPool extends Pool {
    override connect(): Promise<PoolClient>;
    override connect(callback: (err: Error | undefined, client: PoolClient | undefined, done: (release?: unknown) => void) => void): void;
    override connect(
      callback?: (err: Error | undefined, client: PoolClient | undefined, done: (release?: unknown) => void) => void,
    ): Promise<PoolClient> | void {
      const connecting = (async () => {
        for (let attempt = 1; ; attempt++) {
          try {
            return await super.connect();
          } catch (err) {
            if (attempt > target.hosts.length || !isRetryable(err)) throw err;
          }
        }
      })();
      if (!callback) return connecting;
      connecting.then(
        (client) => callback(undefined, client, (release?: unknown) => client.release(release as Error | boolean | undefined)),
        (err: Error) => callback(err, undefined, () => undefined),
      );
    }
  }
  return new MultiHostPool({ ...config, connectionString: target.connectionString, Client: MultiHostClient });
}
