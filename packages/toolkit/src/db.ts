import type { Pool, PoolClient } from 'pg';

/** A pg Pool: every toolkit module takes one. */
export type Db = Pool;
/** A client checked out of it, inside a transaction or not. */
export type Tx = PoolClient;

export function quoteIdent(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`invalid SQL identifier: ${name}`);
  return `"${name}"`;
}

/**
 * Runs fn on one client checked out of the pool. While it is checked out the
 * pool no longer listens for the client's errors, so a connection terminated by
 * the server (57P01, a restart, a reset) would be an uncaught 'error' event and
 * end the process; here it only fails the work in flight, and the broken client
 * is destroyed instead of going back to the pool.
 */
export async function withClient<T>(db: Pool, fn: (client: Tx) => Promise<T>): Promise<T> {
  const client = await db.connect();
  let broken: Error | undefined;
  const onError = (err: Error) => {
    broken = err;
  };
  client.on('error', onError);
  try {
    return await fn(client);
  } catch (err) {
    if (isConnectionError(err)) broken ??= err as Error;
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

/** Runs fn in one transaction: both the effect and its ledger record, or neither. */
export async function inTransaction<T>(db: Pool, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return withClient(db, async (tx) => {
    await tx.query('BEGIN');
    try {
      const result = await fn(tx);
      await tx.query('COMMIT');
      return result;
    } catch (err) {
      // On a dead connection there is nothing to roll back: the server already did.
      if (!isConnectionError(err)) await tx.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}

/**
 * The connection itself failed (terminated, reset, refused, server shutting
 * down): the statement may never have run, and a retry on a new connection can
 * succeed. So with a server that no longer takes writes (25006: a primary demoted
 * to a standby, a server made read-only): the write was refused, and with several
 * hosts a new connection reaches the new primary.
 */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : '';
  if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '25006') return true;
  if (['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND'].includes(code)) return true;
  const message = typeof e?.message === 'string' ? e.message : '';
  return /Connection terminated|Client has encountered a connection error|connection timeout/i.test(message);
}

/**
 * PostgreSQL refused the data itself: class 22 (data exception, e.g. a NUL byte
 * in text) or 23 (integrity constraint violation). The same statement with the
 * same input fails the same way every time, so retrying it is pointless.
 */
export function isPermanentDataError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code);
}
