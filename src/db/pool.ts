import { Client, Pool, type ClientConfig, type PoolConfig } from 'pg';
import { quoteIdent } from '@sagaflow/toolkit/ledger';
import { createMultiHostPool, multiHostClientClass, parseMultiHostUrl } from './multi-host';

/** The toolkit's transaction and error helpers, which the service uses on its own tables too. */
export { inTransaction, isConnectionError, isPermanentDataError, quoteIdent, withClient, type Db, type Tx } from '@sagaflow/toolkit/ledger';

export interface PoolOptions {
  connectionString: string;
  /** Every connection uses this schema first; tests give each file its own. */
  schema?: string;
  max?: number;
}

/**
 * A pool on DATABASE_URL. A URL with several hosts (`postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write`)
 * gets a pool whose every connection goes to the one that takes writes now (src/db/multi-host.ts);
 * a one-host URL, a plain pg Pool.
 */
export function createPool(opts: PoolOptions): Pool {
  const config: PoolConfig = { connectionString: opts.connectionString, max: opts.max ?? 10 };
  if (opts.schema) config.options = `-c search_path=${quoteIdent(opts.schema)},public`;
  const target = parseMultiHostUrl(opts.connectionString);
  const pool = target ? createMultiHostPool(target, config) : new Pool(config);
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  // Nor may a client's error in the moment it changes hands. pg-pool takes its own listener off a
  // client as it hands it over, and the taker's comes a tick later; a client released inside a
  // socket read (pool.query releases in its callback) goes straight to a waiting connect(), and a
  // terminate message in the same read is then emitted with no listener at all: an uncaught
  // exception. With this listener for the client's whole life, the error only leaves the client
  // unqueryable: its next query fails as a connection error and the client is discarded.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/** One client (not yet connected) on a database URL, to the writable host when the URL names several. */
export function createClient(config: ClientConfig & { connectionString: string }): Client {
  const target = parseMultiHostUrl(config.connectionString);
  return target ? new (multiHostClientClass(target))(config) : new Client(config);
}
