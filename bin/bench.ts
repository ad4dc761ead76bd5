import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { startStack } from '../dev/stack';
import { formatGrowth, ledgerGrowth } from '../dev/bench/growth';
import { formatReport, runBench, VARIANTS, type Variant } from '../dev/bench/run';
import { formatWaits, runWaits } from '../dev/bench/waits';
import { parseWait } from '../src/api/server';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run bench -- [--sagas 300] [--in-flight 50] [--rounds 5] [--variants ${VARIANTS.join(',')}] [--pollers N] [--json FILE]
       npm run bench -- --growth 1000,10000,100000,1000000 [--sagas 300]   (step latency as step_ledger grows)
       npm run bench -- --waits 200 [--wait 8s] [--json FILE]   (answer times of concurrent POST /orders?wait=)

Runs the order saga as sagaflow runs it, through the HTTP API, through the stream intake
(an order message on JetStream), as a naive samples-style
saga over the same rows without the ledger (every activity remote), as that saga with
sagaflow's kinds of activity (no-ledger), as the engine floor (no-ledger's shape, no-op
activities) and as DBOS Transact, interleaved over rounds on one Temporal dev server and
one PostgreSQL.
Prints sagas/s and p50/p95/p99 per variant and the ratios with their min–max over rounds.`;

runMain(USAGE, async () => {
  const { values } = parseArgs({
    options: {
      sagas: { type: 'string', default: '300' },
      'in-flight': { type: 'string', default: '50' },
      rounds: { type: 'string', default: '5' },
      variants: { type: 'string', default: VARIANTS.join(',') },
      json: { type: 'string' },
      growth: { type: 'string' },
      waits: { type: 'string' },
      wait: { type: 'string', default: '8s' },
      pollers: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  const int = (s: string | undefined) => (s !== undefined && /^[1-9]\d*$/.test(s) ? Number(s) : NaN);
  const sagas = int(values.sagas);
  const inFlight = int(values['in-flight']);
  const rounds = int(values.rounds);
  const pollers = values.pollers === undefined ? undefined : int(values.pollers);
  const variants = (values.variants ?? '').split(',').filter(Boolean) as Variant[];
  if (values.help || [sagas, inFlight, rounds, pollers ?? 2].some(Number.isNaN) || (pollers ?? 2) < 2 || !variants.length || variants.some((v) => !VARIANTS.includes(v))) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  let waits: { requests: number; waitMs: number } | undefined;
  if (values.waits !== undefined) {
    let waitMs = NaN;
    try {
      waitMs = parseWait(values.wait ?? '8s');
    } catch {
      // Told below, with what --wait takes.
    }
    waits = { requests: int(values.waits), waitMs };
    if (Number.isNaN(waits.requests) || !(waitMs > 0)) {
      console.error('--waits takes a number of requests, --wait a bound such as 8s or 500ms (at most 30s)');
      return 2;
    }
  }
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const log = (m: string) => console.error(`[bench] ${m}`);
  const stack = await startStack(loadConfig({ ...process.env, TEMPORAL_ADDRESS: '' }), log, { ephemeralTemporal: true });
  try {
    if (values.growth !== undefined) {
      const sizes = values.growth.split(',').map(Number);
      if (!sizes.length || sizes.some((n) => !Number.isInteger(n) || n < 1)) {
        console.error('--growth takes ledger sizes, e.g. 1000,10000,100000,1000000');
        return 2;
      }
      const points = await ledgerGrowth(stack.db, sizes, sagas, log);
      console.log(formatGrowth(points));
      if (values.json) writeFileSync(values.json, `${JSON.stringify(points, null, 2)}\n`);
      return 0;
    }
    if (waits) {
      const report = await runWaits(stack, { ...waits, log });
      console.log(formatWaits(report));
      if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
      return report.statuses['201'] === waits.requests ? 0 : 1;
    }
    const report = await runBench(stack, { sagas, inFlight, rounds, variants, pollers, log });
    console.log(formatReport(report));
    if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
    return report.rounds.some((r) => r.failed > 0) ? 1 : 0;
  } finally {
    await stack.stop();
  }
});
