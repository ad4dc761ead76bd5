/**
 * `npm run clients`: creating a client and revoking its key, as an operator
 * would after a leak, through the real command, the real API and PostgreSQL.
 */
import { createApiClient, revokeApiClient } from '../../src/api/auth';
import { startApi, type RunningApi } from '../../src/api/server';
import { createTestContext, databaseUrl, uniqueId, type TestContext } from '../helpers/context';
import { expectProblem, request } from '../helpers/api';
import { spawnNode, urlWithSchema } from '../helpers/worker-process';

let ctx: TestContext;
let api: RunningApi;

beforeAll(async () => {
  ctx = await createTestContext('clients');
  api = await startApi({ db: ctx.db, temporal: ctx.client, taskQueue: uniqueId('clients'), log: () => undefined, recoveryIntervalMs: 0 });
});

afterAll(async () => {
  await api?.close();
  await ctx?.close();
});

/** Runs `npm run clients -- ARGS` on the test's schema; resolves with its exit code and output. */
async function clients(...args: string[]): Promise<{ code: number | null; out: string }> {
  const p = spawnNode('bin/clients.ts', { DATABASE_URL: urlWithSchema(databaseUrl(), ctx.schema) }, '\u0000never', args);
  p.ready.catch(() => undefined);
  const code = await p.exited;
  return { code, out: p.output() };
}

/** What the API answers a client's key: 404 for an order nobody has is "authenticated". */
const probe = (apiKey: string) => request(api.url, '/orders/ord_nobody', { apiKey });

test('a revoked key is refused from its next request on; other keys are not; revoking twice or an unknown client says so', async () => {
  const name = uniqueId('leaky');
  const created = await clients('create', name, '--key-only');
  expect(created.code).toBe(0);
  const key = created.out.trim().split('\n').pop()!;
  expect(key).toMatch(/^sk_/);
  const other = await clients('create', uniqueId('bystander'), '--key-only');
  const otherKey = other.out.trim().split('\n').pop()!;
  expect((await probe(key)).status).toBe(404);

  const revoked = await clients('revoke', name);
  expect(revoked.code).toBe(0);
  expect(revoked.out).toMatch(new RegExp(`client ${name} \\(cli_[0-9a-f]+\\) revoked: its key is refused from now on`));
  expectProblem(await probe(key), 401, 'unauthorized');
  const { rows } = await ctx.db.query<{ revoked_at: Date | null }>('SELECT revoked_at FROM api_clients WHERE name = $1', [name]);
  expect(rows).toEqual([{ revoked_at: expect.any(Date) }]);
  expect((await probe(otherKey)).status).toBe(404);

  // By ID too, and a second revoke changes nothing.
  const id = /\((cli_[0-9a-f]+)\)/.exec(revoked.out)![1]!;
  const again = await clients('revoke', id);
  expect(again.code).toBe(0);
  expect(again.out).toContain(`client ${name} (${id}) was already revoked at ${rows[0]!.revoked_at!.toISOString()}`);
  expect((await ctx.db.query('SELECT revoked_at FROM api_clients WHERE name = $1', [name])).rows).toEqual(rows);

  const unknown = await clients('revoke', uniqueId('nobody'));
  expect(unknown.code).toBe(1);
  expect(unknown.out).toContain('no client named or with ID');
  const usage = await clients('revoke');
  expect(usage.code).toBe(2);
});

// The same operations in this process, beside the command: what the command prints is read from these answers.
test('revokeApiClient by name and by ID: revoked once, then already-revoked with its time; an unknown client is unknown; names are checked', async () => {
  const a = await createApiClient(ctx.db, uniqueId('by-name'));
  const b = await createApiClient(ctx.db, uniqueId('by-id'));
  expect(await revokeApiClient(ctx.db, a.name)).toEqual({ kind: 'revoked', client: { id: a.id, name: a.name } });
  expect(await revokeApiClient(ctx.db, b.id)).toEqual({ kind: 'revoked', client: { id: b.id, name: b.name } });
  const rows = await ctx.db.query<{ id: string; revoked_at: Date | null }>(
    'SELECT id, revoked_at FROM api_clients WHERE id = ANY($1) ORDER BY id',
    [[a.id, b.id]],
  );
  expect(rows.rows.every((r) => r.revoked_at instanceof Date)).toBe(true);
  const again = await revokeApiClient(ctx.db, a.id);
  expect(again).toEqual({ kind: 'already-revoked', client: { id: a.id, name: a.name }, revokedAt: rows.rows.find((r) => r.id === a.id)!.revoked_at });
  expect(await revokeApiClient(ctx.db, 'nobody-' + uniqueId('x'))).toEqual({ kind: 'unknown' });
  expectProblem(await probe(a.apiKey), 401, 'unauthorized');
  await expect(createApiClient(ctx.db, 'no spaces allowed')).rejects.toThrow('client name: 1-64 letters, digits, _ . -');
});
