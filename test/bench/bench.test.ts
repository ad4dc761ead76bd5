/**
 * npm run bench, tiny, to keep it working: every variant's workers start in OS processes of their
 * own (not this one, the driver's), every variant runs its sagas to completion and leaves the rows
 * it should, and the figures (sagas/s, percentiles, lone-saga p50, CPU per saga by process group)
 * are reported and printable. No timing is asserted: the figures are only printed (README, issue notes).
 */
import { formatReport, runBench, unavailable, VARIANTS } from '../../dev/bench/run';
import { createTestContext, databaseUrl, type TestContext } from '../helpers/context';
import { urlWithSchema } from '../helpers/worker-process';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext('bench');
});
afterAll(async () => {
  await ctx?.close();
});

test('every variant runs in processes of its own, completes its sagas and reports its figures', async () => {
  // Restate needs its server's platform package; everything else runs wherever the suite does.
  const variants = VARIANTS.filter((v) => !unavailable(v));
  const stack = {
    // The worker processes work in the test's schema, as its pool does.
    databaseUrl: urlWithSchema(databaseUrl(), ctx.schema),
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
  const report = await runBench(stack, { sagas: 2, inFlight: 2, rounds: 1, skus: 4, lone: 1, variants, log: () => undefined });

  expect(report.rounds.map((r) => [r.variant, r.sagas, r.failed]).sort()).toEqual(variants.map((v) => [v, 2, 0]).sort());
  for (const v of variants) {
    const s = report.summary[v]!;
    expect([s.sagasPerSecond, s.p50Ms, s.p95Ms, s.p99Ms, s.loneP50Ms].every((x) => Number.isFinite(x) && x! > 0)).toBe(true);
    for (const ms of Object.values(s.cpuMsPerSaga)) expect(Number.isFinite(ms) && ms >= 0).toBe(true);
  }
  // Separate processes: every variant's workers run outside the driver (this process), each
  // variant on its own (the HTTP and stream doors start sagaflow's sagas, on sagaflow's workers).
  const own = (v: string) => report.processes.variants[v]!.workers.map((w) => w.pid);
  expect(report.processes.driver).toBe(process.pid);
  const workerOf = (v: string) => (v === 'sagaflow-http' || v === 'sagaflow-stream' ? 'sagaflow' : v);
  const distinct = [...new Set(variants.map(workerOf))];
  const pids = distinct.flatMap(own);
  for (const v of variants) expect(own(v).length).toBeGreaterThan(0);
  expect(pids).not.toContain(process.pid);
  expect(new Set(pids).size).toBe(pids.length);
  if (variants.includes('restate')) expect(report.processes.variants.restate!.server!.pid).not.toBe(process.pid);
  // The workers did the work: their processes, not the driver, spent the CPU of the sagas.
  expect(report.rounds.reduce((sum, r) => sum + r.cpuMsPerSaga.workers, 0)).toBeGreaterThan(0);
  expect(report.summary['sagaflow-eager']!.eagerlyStarted!.of).toBeGreaterThan(0);

  const printed = formatReport(report);
  for (const v of variants) expect(printed).toContain(`| ${v} |`);
  expect(JSON.parse(JSON.stringify(report)).rounds).toHaveLength(variants.length);

  // The same rows for every variant that runs the steps' code (a captured payment and a created
  // shipment per order among them); the ledger's only for sagaflow's
  // sagas; nothing for the floors. Per variant 3 sagas (2 under load, 1 lone) beside the warm-up's.
  const { rows } = await ctx.db.query<{ variant: string; orders: number; completed: number; ledger: number; charged: number; shipped: number }>(
    `SELECT CASE WHEN o.id LIKE 'ord\\_%' AND o.client_id IS NULL THEN 'sagaflow-stream' WHEN o.id LIKE 'ord\\_%' THEN 'sagaflow-http' ELSE substring(o.id from '^(.*)-[0-9a-f]{6}-') END AS variant, count(*)::int AS orders,
            count(*) FILTER (WHERE o.status = 'completed')::int AS completed,
            sum((SELECT count(*) FROM step_ledger l WHERE l.workflow_id = 'order-' || o.id))::int AS ledger,
            count(*) FILTER (WHERE EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = 'captured'))::int AS charged,
            count(*) FILTER (WHERE EXISTS (SELECT 1 FROM shipments s WHERE s.order_id = o.id AND s.status = 'created'))::int AS shipped
       FROM orders o WHERE o.customer_id = 'bench' AND o.id NOT LIKE '%warm%' GROUP BY 1`,
  );
  const steps = 6;
  const expected = [
    { variant: 'dbos', orders: 3, completed: 3, ledger: 0, charged: 3, shipped: 3 },
    { variant: 'naive', orders: 3, completed: 3, ledger: 0, charged: 3, shipped: 3 },
    { variant: 'no-ledger', orders: 3, completed: 3, ledger: 0, charged: 3, shipped: 3 },
    { variant: 'restate', orders: 3, completed: 3, ledger: 0, charged: 3, shipped: 3 },
    { variant: 'sagaflow', orders: 3, completed: 3, ledger: 3 * steps, charged: 3, shipped: 3 },
    { variant: 'sagaflow-eager', orders: 3, completed: 3, ledger: 3 * steps, charged: 3, shipped: 3 },
    // Through the API and the stream: their own order IDs, the warm-up's 5 among them.
    { variant: 'sagaflow-http', orders: 8, completed: 8, ledger: 8 * steps, charged: 8, shipped: 8 },
    { variant: 'sagaflow-hot-sku', orders: 3, completed: 3, ledger: 3 * steps, charged: 3, shipped: 3 },
    { variant: 'sagaflow-stream', orders: 8, completed: 8, ledger: 8 * steps, charged: 8, shipped: 8 },
    { variant: 'sagaflow-v1', orders: 3, completed: 3, ledger: 3 * steps, charged: 3, shipped: 3 },
  ].filter((r) => (variants as readonly string[]).includes(r.variant));
  const byVariant = (a: { variant: string }, b: { variant: string }) => (a.variant < b.variant ? -1 : 1);
  expect([...rows].sort(byVariant)).toEqual(expected.sort(byVariant));
}, 600_000);
