/**
 * One owner per table. The toolkit modules (ledger, edge, inbox) define and
 * version their own tables; the order service's numbered files no longer
 * create them. A database built by the old path (the service's files as they
 * were: today's files with those changed since replaced by their old text from
 * test/fixtures/legacy-migrations, then upgraded by today's `migrate`)
 * and one built by `migrate` alone must end with the same tables: columns,
 * types, defaults, constraints, indexes and triggers, read from pg_catalog.
 * And `sagaflow audit` on a database `migrate` built, with no simulated
 * services' tables, runs clean; on one it did not build, it says so in a line.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runner } from 'node-pg-migrate';
import { Client } from 'pg';
import { EDGE_SCHEMA } from '../../packages/toolkit/src/edge/keys';
import { INBOX_SCHEMA } from '../../packages/toolkit/src/inbox/inbox';
import { LEDGER_SCHEMA } from '../../packages/toolkit/src/ledger/schema';
import { migrate, MIGRATIONS_DIR, TOOLKIT_SCHEMAS } from '../../src/db/migrate';
import { createPool, quoteIdent } from '../../src/db/pool';
import { migrateSchema, SCHEMA_VERSIONS_TABLE } from '../../packages/toolkit/src/schema-versions';
import { auditBooks } from '../../src/orders/audit';
import { migrateDevServices } from '../../dev/services/schema';
import { reconcileSimulatedServices } from '../../dev/services/reconcile';
import { createTestDatabase, databaseUrl, uniqueId } from '../helpers/context';

/** The old text of the service's files that changed when the modules took their tables over. */
const CHANGED_FILES = path.resolve(__dirname, '../fixtures/legacy-migrations');
/** The service's files as they were: today's, with the changed ones as they were. */
const LEGACY_DIR = mkdtempSync(path.join(os.tmpdir(), 'sagaflow-legacy-migrations-'));
const TOOLKIT_TABLES = ['step_ledger', 'idempotency_keys', 'inbox_messages'];
const SIMULATED_TABLES = ['provider_charges', 'provider_refunds', 'carrier_shipments', 'carrier_voids'];

const schemas: string[] = [];
let admin: Client;

beforeAll(async () => {
  for (const f of readdirSync(MIGRATIONS_DIR)) if (f.endsWith('.sql')) copyFileSync(path.join(MIGRATIONS_DIR, f), path.join(LEGACY_DIR, f));
  for (const f of readdirSync(CHANGED_FILES)) copyFileSync(path.join(CHANGED_FILES, f), path.join(LEGACY_DIR, f));
  admin = new Client({ connectionString: databaseUrl() });
  await admin.connect();
});

afterAll(async () => {
  for (const s of schemas) await admin.query(`DROP SCHEMA IF EXISTS ${quoteIdent(s)} CASCADE`);
  await admin.end();
  rmSync(LEGACY_DIR, { recursive: true, force: true });
});

const fresh = () => {
  const s = uniqueId('owners').replace(/-/g, '_');
  schemas.push(s);
  return s;
};

/** The service's files as they were before the modules owned their tables, the first `count` of them (all by default). */
async function migrateLegacy(schema: string, count = Infinity): Promise<void> {
  const client = new Client({ connectionString: databaseUrl() });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    await client.query(`SET search_path TO ${quoteIdent(schema)}`);
    await runner({
      dbClient: client,
      dir: LEGACY_DIR,
      direction: 'up',
      count,
      migrationsTable: 'sagaflow_migrations',
      schema,
      checkOrder: true,
      noLock: true,
      log: () => undefined,
    });
  } finally {
    await client.end();
  }
}

/** Every table of the schema as pg_catalog describes it, with the schema's name taken out of the definitions. */
async function shape(schema: string): Promise<Record<string, unknown>> {
  const strip = (text: string | null) => (text === null ? null : text.split(`${schema}.`).join('').split(`"${schema}".`).join(''));
  const columns = await admin.query<{ table: string; column: string; attnum: number; type: string; not_null: boolean; def: string | null }>(
    `SELECT c.relname AS table, a.attname AS column, a.attnum, format_type(a.atttypid, a.atttypmod) AS type,
            a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS def
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
      ORDER BY 1, 3`,
    [schema],
  );
  const constraints = await admin.query<{ table: string; name: string; def: string }>(
    `SELECT c.relname AS table, con.conname AS name, pg_get_constraintdef(con.oid) AS def
       FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 ORDER BY 1, 2`,
    [schema],
  );
  const indexes = await admin.query<{ table: string; name: string; def: string }>(
    `SELECT tablename AS table, indexname AS name, indexdef AS def FROM pg_indexes WHERE schemaname = $1 ORDER BY 1, 2`,
    [schema],
  );
  const triggers = await admin.query<{ table: string; name: string; def: string }>(
    `SELECT c.relname AS table, t.tgname AS name, pg_get_triggerdef(t.oid) AS def
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND NOT t.tgisinternal ORDER BY 1, 2`,
    [schema],
  );
  const tables: Record<string, { columns: string[]; constraints: string[]; indexes: string[]; triggers: string[] }> = {};
  const of = (t: string) => (tables[t] ??= { columns: [], constraints: [], indexes: [], triggers: [] });
  for (const c of columns.rows) of(c.table).columns.push(`${c.attnum} ${c.column} ${c.type}${c.not_null ? ' NOT NULL' : ''}${c.def ? ` DEFAULT ${strip(c.def)}` : ''}`);
  for (const c of constraints.rows) of(c.table).constraints.push(`${c.name}: ${strip(c.def)}`);
  for (const i of indexes.rows) of(i.table).indexes.push(`${i.name}: ${strip(i.def)}`);
  for (const t of triggers.rows) of(t.table).triggers.push(`${t.name}: ${strip(t.def)}`);
  return tables;
}

const recorded = async (schema: string) =>
  (
    await admin.query<{ module: string; version: number; name: string }>(
      `SELECT module, version, name FROM ${quoteIdent(schema)}.${SCHEMA_VERSIONS_TABLE} ORDER BY module, version`,
    )
  ).rows;

const everyToolkitVersion = () =>
  TOOLKIT_SCHEMAS.flatMap((s) => s.migrations.map((m) => ({ module: s.module, version: m.version, name: m.name }))).sort((a, b) =>
    a.module === b.module ? a.version - b.version : a.module < b.module ? -1 : 1,
  );

test("no table has two definitions: the service's files create no toolkit or simulated service table, the modules none of each other's", () => {
  const creates = (sql: string) => [...sql.matchAll(/CREATE TABLE (?:IF NOT EXISTS )?(\w+)/gi)].map((m) => m[1]!.toLowerCase());
  const serviceTables = readdirSync(MIGRATIONS_DIR)
    .filter((f) => f.endsWith('.sql'))
    .flatMap((f) => creates(readFileSync(path.join(MIGRATIONS_DIR, f), 'utf8').split('-- Down Migration')[0]!));
  const moduleTables = [LEDGER_SCHEMA, EDGE_SCHEMA, INBOX_SCHEMA].map((s) => s.migrations.flatMap((m) => creates(m.sql)));
  expect(moduleTables).toEqual([['step_ledger', 'ledger_rate_limits'], ['idempotency_keys'], ['inbox_messages']]);
  for (const t of [...TOOLKIT_TABLES, ...SIMULATED_TABLES]) expect(serviceTables).not.toContain(t);
  expect(new Set(serviceTables).size).toBe(serviceTables.length);
});

test('a database built by the old migrations and upgraded, and one built by migrate alone, have the same tables', async () => {
  const old = fresh();
  await migrateLegacy(old);
  expect(Object.keys(await shape(old))).toEqual(expect.arrayContaining(TOOLKIT_TABLES));
  const upgraded = await migrate(databaseUrl(), old);
  // The service's files had all run: only the modules' versions are recorded, their tables taken as they were.
  expect(upgraded).toEqual(everyToolkitVersion().map((v) => `${v.module}/${v.version}_${v.name}`).sort(byModuleOrder));
  expect(await recorded(old)).toEqual(everyToolkitVersion());

  const built = fresh();
  await migrate(databaseUrl(), built);
  expect(await recorded(built)).toEqual(everyToolkitVersion());

  const [a, b] = [await shape(old), await shape(built)];
  expect(Object.keys(b)).toEqual(expect.arrayContaining([...TOOLKIT_TABLES, 'orders', 'api_clients', SCHEMA_VERSIONS_TABLE]));
  for (const t of SIMULATED_TABLES) expect(Object.keys(b)).not.toContain(t);
  expect(a).toEqual(b);

  // And again at the next start: nothing to apply, nothing changed.
  expect(await migrate(databaseUrl(), built)).toEqual([]);
  expect(await shape(built)).toEqual(b);
});

test('a database the old migrations left half way (before the edge rename and the ledger columns) upgrades to the same tables', async () => {
  const half = fresh();
  await migrateLegacy(half, 4);
  const cols = await admin.query(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'idempotency_keys' AND column_name = 'order_id'`,
    [half],
  );
  expect(cols.rowCount).toBe(1);
  await migrate(databaseUrl(), half);

  const built = fresh();
  await migrate(databaseUrl(), built);
  expect(await shape(half)).toEqual(await shape(built));
});

test('a module migrated on its own, then by migrate: versions recorded once, the same table', async () => {
  const own = fresh();
  await admin.query(`CREATE SCHEMA ${quoteIdent(own)}`);
  const db = createPool({ connectionString: databaseUrl(), schema: own, max: 4 });
  try {
    const runs = await Promise.all(Array.from({ length: 4 }, () => migrateSchema(db, LEDGER_SCHEMA)));
    expect(runs.filter((r) => r.length > 0)).toHaveLength(1);
    expect(await migrate(databaseUrl(), own)).not.toContain('ledger/1_step_ledger');
  } finally {
    await db.end();
  }
  const built = fresh();
  await migrate(databaseUrl(), built);
  expect(await shape(own)).toEqual(await shape(built));
});

// ---------------------------------------------------------------------------
// The audit on a production database: sagaflow's own books only

function cli(args: string[], url = databaseUrl()): Promise<{ code: number; stdout: string; stderr: string }> {
  const root = path.resolve(__dirname, '../..');
  return new Promise((resolve) => {
    execFile(
      'npx',
      ['ts-node', '--transpile-only', 'bin/audit.ts', ...args],
      { cwd: root, env: { ...process.env, DATABASE_URL: url }, timeout: 90_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

test('sagaflow audit on a database built by migrate alone runs clean; on an unmigrated one, one line and exit 3', async () => {
  const built = fresh();
  await migrate(databaseUrl(), built);
  const clean = await cli(['--schema', built, '--settled']);
  expect(clean).toMatchObject({ code: 0, stdout: 'audit: 0 orders (0 completed, 0 cancelled, 0 failed, 0 pending), 0 violations\n' });

  // A database of its own: a schema of the test database would fall back to public's tables on the search path.
  const empty = await createTestDatabase('unmigrated');
  let missing: Awaited<ReturnType<typeof cli>>;
  try {
    missing = await cli([], empty.url);
  } finally {
    await empty.drop();
  }
  expect(missing.code).toBe(3);
  expect(missing.stdout).toBe('');
  expect(missing.stderr.trim().split('\n')).toHaveLength(1);
  expect(missing.stderr).toMatch(/^audit: cannot read the books in schema "public": relation "\w+" does not exist \(has `sagaflow migrate` run/);
  expect(missing.stderr).not.toMatch(/\n\s+at /);
});

test("the audit reads no simulated service's table; the dev stack's check reconciles them when they are there", async () => {
  const built = fresh();
  await migrate(databaseUrl(), built);
  const db = createPool({ connectionString: databaseUrl(), schema: built, max: 2 });
  try {
    expect((await auditBooks(db, { settled: true })).violations).toEqual([]);
    await migrateDevServices(db);
    await db.query(
      `INSERT INTO provider_charges (idempotency_key, id, amount_minor, currency, source, status)
       VALUES ('order-ghost/charge-payment', 'ch_ghost', 100, 'EUR', 'tok_visa', 'succeeded')`,
    );
    expect((await auditBooks(db, { settled: true })).violations).toEqual([]);
    expect((await auditBooks(db, { settled: true, checks: [reconcileSimulatedServices] })).violations).toEqual([
      'order-ghost/charge-payment: charge ch_ghost succeeded belongs to no order',
    ]);
  } finally {
    await db.end();
  }
});

function byModuleOrder(a: string, b: string): number {
  const order = TOOLKIT_SCHEMAS.map((s) => s.module);
  const [ma, va] = a.split('/') as [string, string];
  const [mb, vb] = b.split('/') as [string, string];
  return order.indexOf(ma) - order.indexOf(mb) || parseInt(va, 10) - parseInt(vb, 10);
}
