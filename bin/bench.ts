import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { startStack } from '../dev/stack';
import { formatGrowth, ledgerGrowth } from '../dev/bench/growth';
import { formatReport, runBench, unavailable, VARIANTS, type Variant } from '../dev/bench/run';
import { formatProfile, summarizeProfile } from '../dev/bench/profile';
import { formatWaits, runWaits } from '../dev/bench/waits';
import { formatRecovery, runRecovery } from '../dev/bench/recovery';
import { parseWait } from '../src/api/server';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run bench -- [--sagas 300] [--in-flight 50] [--rounds 5] [--skus 64] [--lone 10]
                        [--variants ${VARIANTS.join(',')}] [--pollers N] [--json FILE] [--profile DIR]
       npm run bench -- --growth 1000,10000,100000,1000000 [--sagas 300]   (step latency as step_ledger grows)
       npm run bench -- --waits 200 [--wait 8s] [--json FILE]   (answer times of concurrent POST /orders?wait=)
       npm run bench -- --recovery 6 [--json FILE]   (sagas' recovery from a worker SIGKILLed mid-charge, per workflow type)

Runs the order saga as sagaflow runs it (also as its earlier workflow type, with eager start, with
every order on one SKU, through the HTTP API and through the stream intake), the comparison sagas
(naive, no-ledger, floor, floor-local), DBOS Transact and Restate, interleaved over rounds on one
Temporal dev server and one PostgreSQL. Every variant's workers run in OS processes of their own,
apart from this process, the driver (which also runs the simulated provider and carrier). Orders
spread over --skus SKUs.
Prints sagas/s, p50/p95/p99 and the lone-saga p50 (--lone sagas one at a time per variant and round)
per variant, CPU ms per saga by process group (the variant's workers, the engine's server,
PostgreSQL, the driver, the machine), and the ratios with their min–max over rounds.`;

runMain(USAGE, async () => {
  const { values } = parseArgs({
    options: {
      sagas: { type: 'string', default: '300' },
      'in-flight': { type: 'string', default: '50' },
      rounds: { type: 'string', default: '5' },
      variants: { type: 'string' },
      skus: { type: 'string', default: '64' },
      lone: { type: 'string', default: '10' },
      json: { type: 'string' },
      growth: { type: 'string' },
      waits: { type: 'string' },
      recovery: { type: 'string' },
      wait: { type: 'string', default: '8s' },
      pollers: { type: 'string' },
      profile: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  const int = (s: string | undefined) => (s !== undefined && /^[1-9]\d*$/.test(s) ? Number(s) : NaN);
  const sagas = int(values.sagas);
  const inFlight = int(values['in-flight']);
  const rounds = int(values.rounds);
  const pollers = values.pollers === undefined ? undefined : int(values.pollers);
  const skus = int(values.skus);
  const lone = values.lone === '0' ? 0 : int(values.lone);
  // By default every variant this machine can run; one asked for by name must run.
  const variants = (values.variants ?? VARIANTS.filter((v) => !unavailable(v)).join(',')).split(',').filter(Boolean) as Variant[];
  if (values.help || [sagas, inFlight, rounds, skus, lone, pollers ?? 2].some(Number.isNaN) || (pollers ?? 2) < 2 || !variants.length || variants.some((v) => !VARIANTS.includes(v))) {
    console.error(USAGE);
    return values.help ? 0 : 2;
  }
  for (const v of VARIANTS) {
    const why = unavailable(v);
    if (why && variants.includes(v)) {
      console.error(`${v} cannot run here: ${why}`);
      return 2;
    }
    if (why && values.variants === undefined && values.growth === undefined && values.waits === undefined && values.recovery === undefined) console.error(`[bench] leaving out ${v}: ${why}`);
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
  const t0 = Date.now();
  const log = (m: string) => console.error(`[bench ${((Date.now() - t0) / 1000).toFixed(0)}s] ${m}`);
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
    if (values.recovery !== undefined) {
      const recoverySagas = int(values.recovery);
      if (Number.isNaN(recoverySagas)) {
        console.error('--recovery takes a number of sagas per run, e.g. 6');
        return 2;
      }
      const options = { sagas: recoverySagas, latencyMs: 2000 };
      const results = await runRecovery(stack, { ...options, log });
      console.log(formatRecovery(results, options));
      if (values.json) writeFileSync(values.json, `${JSON.stringify(results, null, 2)}\n`);
      return results.every((r) => r.completed === recoverySagas) ? 0 : 1;
    }
    if (waits) {
      const report = await runWaits(stack, { ...waits, log });
      console.log(formatWaits(report));
      if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
      return report.statuses['201'] === waits.requests ? 0 : 1;
    }
    const profileDir = values.profile === undefined ? undefined : path.resolve(values.profile);
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    const report = await runBench(stack, { sagas, inFlight, rounds, variants, skus, lone, pollers, profileDir, log });
    console.log(formatReport(report));
    if (profileDir && report.profile) {
      // The worker wrote its profile as it exited; only its loaded runs count.
      const file = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(profileDir, f)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
      if (file) {
        const sagasRun = report.profile.windows.reduce((n, w) => n + w.sagas, 0);
        console.log(`\n${formatProfile(summarizeProfile(file, { startedAt: report.profile.startedAt, windows: report.profile.windows }), sagasRun)}`);
      } else log(`no CPU profile in ${profileDir}`);
    }
    if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
    return report.rounds.some((r) => r.failed > 0) ? 1 : 0;
  } finally {
    await stack.stop();
  }
});
