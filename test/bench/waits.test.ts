/**
 * npm run bench -- --waits, tiny, to keep it working: every request is answered 201 with its
 * saga running and no result poll is left open. No timing is asserted: the figures are only printed.
 */
import { formatWaits, runWaits } from '../../dev/bench/waits';
import { createTestContext, databaseUrl, type TestContext } from '../helpers/context';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext('bench_waits');
});
afterAll(async () => {
  await ctx?.close();
});

test('the waits run answers every request and reports answer-time percentiles and the polls left open', async () => {
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
  const report = await runWaits(stack, { requests: 5, waitMs: 500, log: () => undefined });

  expect(report).toMatchObject({ requests: 5, waitMs: 500, statuses: { '201': 5 }, sagaStatuses: { running: 5 }, resultPollsLeftOpen: 0 });
  for (const x of [report.p50Ms, report.p99Ms, report.maxMs, report.server.p50Ms, report.server.maxMs]) expect(Number.isFinite(x) && x > 0).toBe(true);
  expect(formatWaits(report)).toContain('| 201 ×5 | running ×5 |');
  // The sagas nothing would ever run are ended, not left on the server.
  const { rows } = await ctx.db.query<{ workflow_id: string }>(`SELECT workflow_id FROM orders WHERE customer_id = 'bench'`);
  expect(rows).toHaveLength(6);
  const described = await Promise.all(rows.map((r) => ctx.client.workflow.getHandle(r.workflow_id).describe()));
  expect(new Set(described.map((d) => d.status.name))).toEqual(new Set(['TERMINATED']));
}, 120_000);
