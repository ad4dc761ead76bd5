import { Pool, type PoolClient, type PoolConfig } from 'pg';

export type Db = Pool;
export type Tx = PoolClient;

export interface PoolOptions {
  connectionString: string;
  /** Every connection uses this schema first; tests give each file its own. */
  schema?: string;
  max?: number;
}

export function createPool(opts: PoolOptions): Pool {
  const config: PoolConfig = { connectionString: opts.connectionString, max: opts.max ?? 10 };
  if (opts.schema) config.options = `-c search_path=${quoteIdent(opts.schema)},public`;
  const pool = new Pool(config);
  // An idle client's error (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  return pool;
}

export function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid SQL identifier: ${name}`);
  return `"${name}"`;
}

/** Runs fn in one transaction: both the effect and its ledger record, or neither. */
export async function inTransaction<T>(db: Pool, fn: (tx: Tx) => Promise<T>): Promise<T> {
  const tx = await db.connect();
  try {
    await tx.query('BEGIN');
    const result = await fn(tx);
    await tx.query('COMMIT');
    return result;
  } catch (err) {
    await tx.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    tx.release();
  }
}
