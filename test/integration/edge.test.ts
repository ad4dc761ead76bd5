/**
 * The Idempotency-Key records (src/edge, `sagaflow/edge`) as a toolkit on a
 * database of someone else's: a schema of its own created by migrateEdge alone,
 * no sagaflow migrations, no API. Every claim's outcome is read back from the
 * rows it leaves.
 */
import { claimKey, completeKey, migrateEdge, purgeExpiredKeys, releaseLease, type Claim, type ClaimRequest } from '../../packages/toolkit/src/edge/keys';
import { inTransaction, type Db } from '../../src/db/pool';
import { createTestSchema, uniqueId } from '../helpers/context';

let own: Awaited<ReturnType<typeof createTestSchema>>;
let db: Db;

beforeAll(async () => {
  own = await createTestSchema('edge', { migrations: false });
  db = own.db;
});

afterAll(async () => {
  await own?.drop();
});

/** A request for a fresh key of a fresh client; each test claims its own. */
function request(overrides: Partial<ClaimRequest> = {}): ClaimRequest {
  return {
    clientId: uniqueId('client'),
    key: uniqueId('key'),
    fingerprint: 'fp-1',
    newResourceId: uniqueId('res'),
    ttlMs: 3_600_000,
    leaseMs: 10_000,
    ...overrides,
  };
}

const claim = (r: ClaimRequest): Promise<Claim> => inTransaction(db, (tx) => claimKey(tx, r));

interface KeyRow {
  fingerprint: string;
  resource_id: string;
  state: string;
  response_status: number | null;
  response_body: string | null;
  lease_ms: number;
  ttl_ms: number;
}

async function row(r: ClaimRequest): Promise<KeyRow | undefined> {
  const res = await db.query<KeyRow>(
    `SELECT fingerprint, resource_id, state, response_status, response_body,
            (extract(epoch FROM locked_until - now()) * 1000)::int AS lease_ms,
            (extract(epoch FROM expires_at - now()) * 1000)::int AS ttl_ms
       FROM idempotency_keys WHERE client_id = $1 AND key = $2`,
    [r.clientId, r.key],
  );
  return res.rows[0];
}

describe('migrateEdge', () => {
  test('creates the table in the pool’s own schema, and eight concurrent runs of it all succeed', async () => {
    await Promise.all(Array.from({ length: 8 }, () => migrateEdge(db)));
    const tables = await db.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [own.schema],
    );
    // Its one table, and the record of the versions it applied (once each, whoever ran first).
    expect(tables.rows).toEqual([{ table_name: 'idempotency_keys' }, { table_name: 'sagaflow_schema_versions' }]);
    const versions = await db.query(`SELECT module, version, name FROM sagaflow_schema_versions`);
    expect(versions.rows).toEqual([{ module: 'edge', version: 1, name: 'idempotency_keys' }]);
    const indexes = await db.query(
      `SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'idempotency_keys' ORDER BY indexname`,
      [own.schema],
    );
    expect(indexes.rows.map((r) => r.indexname)).toEqual(['idempotency_keys_expiry_idx', 'idempotency_keys_pkey']);
    await migrateEdge(db);
  });
});

describe('claimKey', () => {
  beforeAll(() => migrateEdge(db));

  test('a new key: claimed for the resource it names, in flight, leased and kept for the times asked', async () => {
    const r = request({ leaseMs: 7_000, ttlMs: 120_000 });
    expect(await claim(r)).toEqual({ kind: 'new', resourceId: r.newResourceId });
    const kept = await row(r);
    expect(kept).toMatchObject({ fingerprint: 'fp-1', resource_id: r.newResourceId, state: 'in_flight', response_status: null });
    expect(kept!.lease_ms).toBeGreaterThan(5_000);
    expect(kept!.lease_ms).toBeLessThanOrEqual(7_000);
    expect(kept!.ttl_ms).toBeGreaterThan(100_000);
    expect(kept!.ttl_ms).toBeLessThanOrEqual(120_000);
  });

  test('the same key while leased: in flight, Retry-After the lease left rounded up to whole seconds', async () => {
    const r = request({ leaseMs: 3_400 });
    await claim(r);
    const before = (await row(r))!.lease_ms;
    const second = await claim({ ...r, newResourceId: uniqueId('other') });
    const after = (await row(r))!.lease_ms;
    expect(second.kind).toBe('in-flight');
    const seconds = (second as { retryAfterSeconds: number }).retryAfterSeconds;
    expect(seconds).toBeGreaterThanOrEqual(Math.ceil(after / 1000));
    expect(seconds).toBeLessThanOrEqual(Math.ceil(before / 1000));
    // A lease of less than a second still asks for one.
    const short = request({ leaseMs: 400 });
    await claim(short);
    expect(await claim(short)).toEqual({ kind: 'in-flight', retryAfterSeconds: 1 });
    // The second claim changed nothing.
    expect((await row(r))!.resource_id).toBe(r.newResourceId);
  });

  test('the same key with another body: mismatch, whatever its state, and the row is untouched', async () => {
    const r = request();
    await claim(r);
    expect(await claim({ ...r, fingerprint: 'fp-2' })).toEqual({ kind: 'mismatch' });
    await completeKey(db, r.clientId, r.key, 201, '{"id":1}');
    expect(await claim({ ...r, fingerprint: 'fp-2' })).toEqual({ kind: 'mismatch' });
    expect(await row(r)).toMatchObject({ fingerprint: 'fp-1', state: 'completed', response_body: '{"id":1}' });
  });

  test('completed: every later claim replays the stored status and bytes; a second completeKey cannot overwrite them', async () => {
    const r = request();
    await claim(r);
    const body = '{"b":2,"a":"é\\u0000"}';
    await completeKey(db, r.clientId, r.key, 202, body);
    await completeKey(db, r.clientId, r.key, 500, 'late');
    const replay = { kind: 'replay', resourceId: r.newResourceId, status: 202, body };
    expect(await claim({ ...r, newResourceId: uniqueId('other') })).toEqual(replay);
    expect(await claim(r)).toEqual(replay);
    expect((await row(r))!.lease_ms).toBeLessThanOrEqual(0);
  });

  test('a lease run out: the next claim heals the same resource and takes a fresh lease, so a third claim is in flight', async () => {
    const r = request({ leaseMs: 50 });
    await claim(r);
    await new Promise((resolve) => setTimeout(resolve, 120));
    const healer = { ...r, newResourceId: uniqueId('other'), leaseMs: 9_000 };
    expect(await claim(healer)).toEqual({ kind: 'heal', resourceId: r.newResourceId });
    const leased = (await row(r))!;
    expect(leased.state).toBe('in_flight');
    expect(leased.lease_ms).toBeGreaterThan(7_000);
    expect(leased.lease_ms).toBeLessThanOrEqual(9_000);
    expect(await claim(healer)).toMatchObject({ kind: 'in-flight' });
  });

  test('releaseLease lets the next claim heal at once; it leaves a completed key as it was', async () => {
    const r = request({ leaseMs: 60_000 });
    await claim(r);
    await releaseLease(db, r.clientId, r.key);
    expect(await claim(r)).toEqual({ kind: 'heal', resourceId: r.newResourceId });

    const done = request();
    await claim(done);
    await completeKey(db, done.clientId, done.key, 201, 'ok');
    const completed = await row(done);
    await releaseLease(db, done.clientId, done.key);
    expect(await row(done)).toMatchObject({ state: 'completed', response_status: 201, response_body: 'ok' });
    expect((await row(done))!.lease_ms).toBeLessThanOrEqual(completed!.lease_ms);
  });

  test('keys are per client: the same key string of another client is a new claim of its own', async () => {
    const r = request();
    await claim(r);
    const other = { ...r, clientId: uniqueId('client'), fingerprint: 'fp-other', newResourceId: uniqueId('res') };
    expect(await claim(other)).toEqual({ kind: 'new', resourceId: other.newResourceId });
    expect((await row(r))!.resource_id).toBe(r.newResourceId);
  });

  test('an expired key is forgotten: the same key starts afresh, even with another body; purgeExpiredKeys deletes only expired rows', async () => {
    const r = request({ ttlMs: 50 });
    await claim(r);
    await completeKey(db, r.clientId, r.key, 201, 'old');
    const kept = request();
    await claim(kept);
    const lapsed = request({ ttlMs: 50 });
    await claim(lapsed);
    await new Promise((resolve) => setTimeout(resolve, 120));

    const again = { ...r, fingerprint: 'fp-new', newResourceId: uniqueId('res') };
    expect(await claim(again)).toEqual({ kind: 'new', resourceId: again.newResourceId });
    expect(await row(r)).toMatchObject({ fingerprint: 'fp-new', state: 'in_flight', response_body: null });

    const expired = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM idempotency_keys WHERE expires_at <= now()');
    expect(expired.rows[0]!.n).toBeGreaterThanOrEqual(1);
    expect(await purgeExpiredKeys(db)).toBe(expired.rows[0]!.n);
    expect(await row(lapsed)).toBeUndefined();
    expect(await row(kept)).toBeDefined();
    expect(await row(again)).toBeDefined();
    expect(await purgeExpiredKeys(db)).toBe(0);
  });

  test('racing claims of one new key: exactly one is new, the rest are in flight for that same resource', async () => {
    const r = request();
    const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => claim({ ...r, newResourceId: `res-${i}` })));
    const fresh = claims.filter((c) => c.kind === 'new');
    expect(fresh).toHaveLength(1);
    expect(claims.filter((c) => c.kind === 'in-flight')).toHaveLength(9);
    expect((await row(r))!.resource_id).toBe((fresh[0] as { resourceId: string }).resourceId);
  });
});
