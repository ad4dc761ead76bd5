/**
 * The multi-host layer (src/db/multi-host.ts) against two real PostgreSQL servers, a primary
 * and a streaming standby of it: a URL naming both reaches the primary whatever their order,
 * never writes on the standby, refuses a server made read-only, discards a connection whose
 * server stopped taking writes, and follows a failover (the primary stopped, the standby
 * promoted). A one-host URL still gets pg's own Pool.
 */
import { Pool } from 'pg';
import { migrate } from '../../src/db/migrate';
import { NoWritableHostError } from '../../src/db/multi-host';
import { createPool, inTransaction, isConnectionError, withClient } from '../../src/db/pool';
import { freePort } from '../../src/ports';
import { startReplicaPair, type ReplicaPair } from '../helpers/replica-pair';

let pair: ReplicaPair;
let pools: Pool[] = [];

beforeAll(async () => {
  pair = await startReplicaPair();
  const admin = await pair.primary.admin();
  await admin.query('CREATE TABLE writes (n int PRIMARY KEY, at_port int NOT NULL)');
  await admin.end();
}, 120_000);

afterEach(async () => {
  await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  pools = [];
});

afterAll(async () => {
  await pair?.close();
});

const url = (...ports: number[]) => `postgresql://postgres@${ports.map((p) => `127.0.0.1:${p}`).join(',')}/postgres?target_session_attrs=read-write`;
const pool = (connectionString: string, max = 4) => {
  const p = createPool({ connectionString, max });
  pools.push(p);
  return p;
};
const serverPort = async (db: Pool) => Number((await db.query<{ p: number }>('SELECT inet_server_port() AS p')).rows[0]!.p);

test('a one-host URL gets pg\'s own Pool, as before; a multi-host one a pool of its own', () => {
  expect(Object.getPrototypeOf(pool(pair.url(pair.primary)))).toBe(Pool.prototype);
  expect(pool(url(pair.primary.port, pair.standby.port))).toBeInstanceOf(Pool);
  expect(Object.getPrototypeOf(pool(url(pair.primary.port, pair.standby.port)))).not.toBe(Pool.prototype);
});

test('whatever the order of the hosts, every connection is to the primary; the standby first in the list is passed over', async () => {
  for (const ports of [[pair.standby.port, pair.primary.port], [pair.primary.port, pair.standby.port]]) {
    const db = pool(url(...ports));
    // Several connections at once: each is checked, none lands on the standby.
    const seen = await Promise.all(Array.from({ length: 6 }, () => withClient(db, async (c) => Number((await c.query('SELECT inet_server_port() AS p')).rows[0].p))));
    expect(new Set(seen)).toEqual(new Set([pair.primary.port]));
    await db.query('INSERT INTO writes VALUES ($1, inet_server_port())', [ports[0]]);
  }
  // The migrations too: the migrating client is the same layer's.
  const applied = await migrate(url(pair.standby.port, pair.primary.port), 'multi_host_migrated');
  expect(applied.length).toBeGreaterThan(0);
  const admin = await pair.primary.admin();
  expect((await admin.query("SELECT 1 FROM pg_namespace WHERE nspname = 'multi_host_migrated'")).rowCount).toBe(1);
  await admin.end();
});

test('no host takes writes (a standby, a port with nothing on it): a connection error (08001) naming each host and why', async () => {
  const nothing = await freePort();
  const db = pool(url(pair.standby.port, nothing));
  const err = await db.query('SELECT 1').catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NoWritableHostError);
  expect((err as NoWritableHostError).code).toBe('08001');
  expect(isConnectionError(err)).toBe(true);
  expect((err as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${pair.standby.port} \\(in recovery: a standby\\)`));
  expect((err as Error).message).toMatch(new RegExp(`127\\.0\\.0\\.1:${nothing} \\(.*ECONNREFUSED.*\\)`));
  // target_session_attrs with one host checks that one host too.
  await expect(pool(`${pair.url(pair.standby)}?target_session_attrs=read-write`).query('SELECT 1')).rejects.toBeInstanceOf(NoWritableHostError);
});

test('a server made read-only under a checked-out connection: its write fails with 25006, the connection is discarded, no new one is made there', async () => {
  const db = pool(url(pair.primary.port, pair.standby.port), 2);
  const admin = await pair.primary.admin();
  try {
    await db.query('SELECT 1');
    await withClient(db, async (held) => {
      await admin.query('ALTER SYSTEM SET default_transaction_read_only = on');
      await admin.query('SELECT pg_reload_conf()');
      // The reload reaches the held session between its statements.
      let err: unknown;
      for (let i = 0; i < 50 && !err; i++) {
        await held.query('INSERT INTO writes VALUES ($1, inet_server_port())', [-1000 - i]).then(
          () => held.query('DELETE FROM writes WHERE n = $1', [-1000 - i]),
          (e: unknown) => (err = e),
        );
        if (!err) await new Promise((r) => setTimeout(r, 50));
      }
      expect((err as { code?: string }).code).toBe('25006');
      expect(isConnectionError(err)).toBe(true);
      throw err;
    }).catch((e: { code?: string }) => {
      if (e.code !== '25006') throw e;
    });
    // The broken connection did not go back to the pool.
    expect(db.totalCount).toBe(0);
    const err = await db.query('SELECT 1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoWritableHostError);
    expect((err as Error).message).toContain(`127.0.0.1:${pair.primary.port} (read-only (default_transaction_read_only))`);
  } finally {
    await admin.query('ALTER SYSTEM RESET default_transaction_read_only');
    await admin.query('SELECT pg_reload_conf()');
    await admin.end();
  }
  await expect(serverPort(db).catch(async () => serverPort(db))).resolves.toBe(pair.primary.port);
});

test('failover: the primary stopped and the standby promoted: writes fail while there is no primary, then go on on the new one; none ever lands on a standby', async () => {
  const db = pool(url(pair.primary.port, pair.standby.port), 4);
  const acknowledged: number[] = [];
  const failures: string[] = [];
  let stop = false;
  let n = 0;
  const writer = (async () => {
    while (!stop) {
      const i = ++n;
      try {
        // A transaction as the ledger's: one client, BEGIN ... COMMIT.
        await inTransaction(db, (tx) => tx.query('INSERT INTO writes VALUES ($1, inet_server_port())', [i]));
        acknowledged.push(i);
      } catch (err) {
        expect(isConnectionError(err)).toBe(true);
        failures.push((err as { code?: string }).code ?? (err as Error).message);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  })();
  const until = async (what: string, pred: () => boolean) => {
    for (let i = 0; i < 400 && !pred(); i++) await new Promise((r) => setTimeout(r, 25));
    if (!pred()) throw new Error(`never: ${what}`);
  };
  await until('writes on the primary', () => acknowledged.length >= 20);
  const beforeFailover = acknowledged.length;
  await pair.primary.stop();
  await until('writes failing', () => failures.length >= 3);
  const admin = await pair.standby.admin();
  await admin.query('SELECT pg_promote(true, 30)');
  await admin.end();
  const promotedAt = acknowledged.length;
  await until('writes on the promoted standby', () => acknowledged.length >= promotedAt + 20);
  stop = true;
  await writer;

  const check = await pair.standby.admin();
  const rows = (await check.query<{ n: number; at_port: number }>('SELECT n, at_port FROM writes WHERE n > 0')).rows;
  await check.end();
  const stored = new Map(rows.map((r) => [r.n, r.at_port]));
  // Every acknowledged write is on the new primary (the fast shutdown sent the old one's WAL first)...
  expect(acknowledged.filter((i) => !stored.has(i))).toEqual([]);
  // ...each made on the primary of its moment, never on the standby while it was one.
  const after = acknowledged.slice(beforeFailover);
  expect(after.length).toBeGreaterThanOrEqual(20);
  expect(after.every((i) => stored.get(i) === pair.primary.port || stored.get(i) === pair.standby.port)).toBe(true);
  expect(acknowledged.slice(-20).every((i) => stored.get(i) === pair.standby.port)).toBe(true);
  expect(failures.length).toBeGreaterThanOrEqual(3);
  process.stderr.write(`[multi-host] ${acknowledged.length} writes acknowledged, ${failures.length} failed during the failover (${[...new Set(failures)].join(', ')})\n`);
}, 60_000);
