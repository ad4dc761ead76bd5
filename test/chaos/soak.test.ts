import fs from 'node:fs';
import { formatReport, runChaos, type ChaosReport } from '../../dev/chaos/soak';

/**
 * A small fault soak (dev/chaos/soak.ts) on a stack of its own: 40 orders
 * through the HTTP API while workers are killed and terminated, PostgreSQL
 * connections reset and the server restarted twice, the services and the API
 * killed and restarted, provider faults armed, and the Temporal server killed
 * twice. Afterwards the rows must say that every saga closed and the books
 * balance, and every saga's result must agree with its ledger rows.
 */
const SOAK_DEADLINE_MS = 5 * 60_000;
let report: ChaosReport;

beforeAll(async () => {
  const lines: string[] = [];
  report = await runChaos({
    orders: 40,
    concurrency: 20,
    workers: 2,
    seed: 4242,
    ratePerSecond: 1,
    // Intervals halved, and the API restarted sooner than its minute, so a short run meets every fault.
    faultScale: 0.5,
    faultPlan: { apiRestartEveryMs: 15_000 },
    deadlineMs: SOAK_DEADLINE_MS,
    settleTimeoutMs: 120_000,
    log: (m) => lines.push(m),
  });
  // The whole report in the output, so a failure says what broke and where the logs are.
  process.stdout.write(`${formatReport(report)}\n`);
}, SOAK_DEADLINE_MS + 60_000);

afterAll(() => {
  // The logs stay for a failed run only.
  if (report?.ok) fs.rmSync(report.runDir, { recursive: true, force: true });
});

test('the soak ran to the end under every fault', () => {
  expect(report.deadlineHit).toBe(false);
  expect(report.aborted).toBe(false);
  expect(report.orders.created).toBeGreaterThan(0);
  expect(report.faults['worker SIGKILL'] ?? 0).toBeGreaterThan(0);
  expect(report.faults['pg_terminate_backend'] ?? 0).toBeGreaterThan(0);
  expect(report.faults['postgres restart']).toBe(2);
  expect(report.faults['temporal SIGKILL']).toBe(2);
  expect(report.faults['services restart'] ?? 0).toBeGreaterThan(0);
});

test('no order is left pending and every saga closed', () => {
  expect(report.stuck).toEqual([]);
  expect(report.runningSagas).toEqual([]);
  expect(report.byStatus.pending ?? 0).toBe(0);
});

test('the books audit finds no violation', () => {
  expect(report.auditError).toBeUndefined();
  expect(report.violations).toEqual([]);
  expect(report.clientViolations).toEqual([]);
});

test('every closed saga agrees with its ledger: steps, compensations, reason and outcome', () => {
  expect(report.sagasChecked).toBe(report.orders.inDatabase);
  expect(report.sagaViolations).toEqual([]);
});
