import type { Pool, PoolClient, QueryResult } from 'pg';
import { inlineStatement, type Statement } from './inline-sql';

export type { Statement } from './inline-sql';

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
export async function inTransaction<T>(
  db: Pool,
  fn: (tx: Tx) => Promise<T>,
  /**
   * fn sends BEGIN itself, with its first statement (`begins: true`), or COMMIT with its last
   * (`commits`, through commitWith): a round trip less each. `begins: 'lazily'`: BEGIN goes with
   * whatever statement fn sends first, its parameters written into it (beginningWithFirst).
   */
  own: { begins?: boolean | 'lazily'; commits?: boolean } = {},
): Promise<T> {
  return withClient(db, async (client) => {
    if (!own.begins) await client.query('BEGIN');
    const lazy = own.begins === 'lazily' ? beginningWithFirst(client) : undefined;
    try {
      const result = await fn(lazy?.tx ?? client);
      if (!own.commits) await client.query('COMMIT');
      return result;
    } catch (err) {
      // On a dead connection there is nothing to roll back: the server already did. Nor is there
      // when a lazy BEGIN was never sent (fn failed before its first statement).
      if (!isConnectionError(err) && lazy?.begun() !== false) await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  });
}

/**
 * The client, but its first query goes as one message with BEGIN before it: `BEGIN; <statement>`,
 * its parameters written in as literals (inlineStatement), and answers with the statement's own
 * result. A first query that cannot be sent so (a Buffer, a NUL, a callback, a query object) is
 * sent as it is, after a BEGIN of its own.
 */
function beginningWithFirst(client: Tx): { tx: Tx; begun: () => boolean } {
  let begun = false;
  const query = async (...args: unknown[]): Promise<unknown> => {
    const call = client.query as (...a: unknown[]) => Promise<unknown>;
    if (begun) return call.apply(client, args);
    begun = true;
    const [text, values, ...rest] = args;
    const inlined =
      typeof text === 'string' && rest.length === 0 && (values === undefined || Array.isArray(values))
        ? inlineStatement({ text, values: values as unknown[] | undefined }, (v) => client.escapeLiteral(v))
        : undefined;
    if (inlined === undefined) {
      await client.query('BEGIN');
      return call.apply(client, args);
    }
    const results = (await client.query(`BEGIN; ${inlined}`)) as unknown as QueryResult[];
    return results.length === 2 ? results[1] : results.slice(1);
  };
  return {
    tx: new Proxy(client, { get: (target, prop, receiver) => (prop === 'query' ? query : Reflect.get(target, prop, receiver)) }),
    begun: () => begun,
  };
}

/**
 * Ends the transaction: COMMIT in one message with `last`, its parameters written in (inlineStatement),
 * or after it on its own where they cannot be, or alone. For inTransaction's `commits`.
 */
export async function commitWith(tx: Tx, last?: Statement): Promise<void> {
  if (!last) {
    await tx.query('COMMIT');
    return;
  }
  const inlined = inlineStatement(last, (v) => tx.escapeLiteral(v));
  if (inlined === undefined) {
    await tx.query(last.text, last.values as unknown[] | undefined);
    await tx.query('COMMIT');
    return;
  }
  await tx.query(`${inlined}; COMMIT`);
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
