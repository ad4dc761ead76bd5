import fs from 'node:fs';
import { formatReport, runChaos, type ChaosReport } from '../dev/chaos/soak';

/**
 * The fault soak (dev/chaos/soak.ts) in cluster mode, small: 32 orders through
 * the HTTP API on a self-hosted Temporal cluster while a history, a matching
 * and a frontend host are SIGKILLed in turn (every 6 s here, 30 s in a full
 * run) and started again, beside every other fault of the soak: workers killed,
 * connections terminated, PostgreSQL restarted twice, the services and the API
 * restarted, provider faults. Every saga must close, the books balance, and each
 * saga's result agree with its ledger rows.
 */
const SOAK_DEADLINE_MS = 6 * 60_000;
let report: ChaosReport;

beforeAll(async () => {
  const lines: string[] = [];
  report = await runChaos({
    orders: 32,
    concurrency: 15,
    workers: 2,
    seed: 1919,
    ratePerSecond: 1,
    temporal: 'cluster',
    faultScale: 1 / 3,
    // A host kill (with its restart and rejoin) takes a few seconds of its own: every 6 s meets all three kinds.
    faultPlan: { apiRestartEveryMs: 15_000, clusterHostKillEveryMs: 6_000 },
    deadlineMs: SOAK_DEADLINE_MS,
    settleTimeoutMs: 150_000,
    log: (m) => lines.push(m),
  });
  process.stdout.write(`${formatReport(report)}\n`);
}, SOAK_DEADLINE_MS + 60_000);

afterAll(() => {
  if (report?.ok) fs.rmSync(report.runDir, { recursive: true, force: true });
});

test('history, matching and frontend hosts were killed in turn, with the rest of the faults', () => {
  expect(report.deadlineHit).toBe(false);
  const hosts = report.faultEvents.filter((e) => e.fault === 'cluster host SIGKILL').map((e) => e.detail?.split('#')[0]);
  expect(hosts.slice(0, 3)).toEqual(['history', 'matching', 'frontend']);
  expect(report.faults['postgres restart']).toBe(2);
  expect(report.faults['temporal SIGKILL']).toBeUndefined();
  expect(report.faults['worker SIGKILL'] ?? 0).toBeGreaterThan(0);
});

test('every saga closed, the books balance, and every saga agrees with its ledger', () => {
  expect(report.stuck).toEqual([]);
  expect(report.runningSagas).toEqual([]);
  expect(report.auditError).toBeUndefined();
  expect(report.violations).toEqual([]);
  expect(report.clientViolations).toEqual([]);
  expect(report.sagasChecked).toBe(report.orders.inDatabase);
  expect(report.sagaViolations).toEqual([]);
  // The stream doors ran through the cluster faults too: every message, event and webhook accounted for.
  expect(report.doorViolations).toEqual([]);
  expect(report.crashes).toEqual([]);
});
