/**
 * npm run bench, tiny, to keep it working: every variant runs its sagas to
 * completion and leaves the rows it should. No timing is asserted: the figures
 * are only printed (README, issue notes).
 */
import { runBench, VARIANTS } from '../../dev/bench/run';
import { createTestContext, databaseUrl, type TestContext } from '../helpers/context';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext('bench');
});
afterAll(async () => {
  await ctx?.close();
});

test('every variant completes its sagas and reports sagas/s and percentiles; only sagaflow writes ledger rows', async () => {
  const stack = {
    databaseUrl: databaseUrl(),
    db: ctx.db,
    temporal: { address: process.env.TEMPORAL_ADDRESS!, namespace: ctx.namespace, source: 'test' },
    paymentProviderUrl: ctx.payment.url,
    carrierUrl: ctx.carrier.url,
    natsUrl: process.env.NATS_URL!,
    natsReplicas: 1,
    webhookSecretsKey: '',
    parts: [],
    stop: async () => undefined,
  };
  const report = await runBench(stack, { sagas: 2, inFlight: 2, rounds: 1, variants: [...VARIANTS], log: () => undefined });

  expect(report.rounds.map((r) => [r.variant, r.sagas, r.failed]).sort()).toEqual(VARIANTS.map((v) => [v, 2, 0]).sort());
  for (const v of VARIANTS) {
    const s = report.summary[v]!;
    expect([s.sagasPerSecond, s.p50Ms, s.p95Ms, s.p99Ms].every((x) => Number.isFinite(x) && x > 0)).toBe(true);
  }
  expect(report.ratios.map((r) => r.name)).toHaveLength(10);
  // Same rows for sagaflow, the naive and no-ledger sagas and DBOS; the ledger's only for sagaflow; nothing for the floor.
  const { rows } = await ctx.db.query<{ variant: string; orders: number; completed: number; ledger: number }>(
    `SELECT CASE WHEN o.id LIKE 'ord\\_%' AND o.client_id IS NULL THEN 'sagaflow-stream' WHEN o.id LIKE 'ord\\_%' THEN 'sagaflow-http' ELSE substring(o.id from '^(.*)-[0-9a-f]{6}-') END AS variant, count(*)::int AS orders,
            count(*) FILTER (WHERE o.status = 'completed')::int AS completed,
            sum((SELECT count(*) FROM step_ledger l WHERE l.workflow_id = 'order-' || o.id))::int AS ledger
       FROM orders o WHERE o.customer_id = 'bench' AND o.id NOT LIKE '%warm%' GROUP BY 1 ORDER BY 1`,
  );
  expect(rows).toEqual([
    { variant: 'dbos', orders: 2, completed: 2, ledger: 0 },
    { variant: 'naive', orders: 2, completed: 2, ledger: 0 },
    { variant: 'no-ledger', orders: 2, completed: 2, ledger: 0 },
    { variant: 'sagaflow', orders: 2, completed: 2, ledger: 12 },
    // Through the API: its own order IDs, the warm-up's among them.
    { variant: 'sagaflow-http', orders: 4, completed: 4, ledger: 24 },
    // Through the stream: the intake's own order IDs too, the warm-up's among them.
    { variant: 'sagaflow-stream', orders: 4, completed: 4, ledger: 24 },
  ]);
}, 300_000);
