import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { formatReport, runChaos, type ChaosOptions } from '../dev/chaos/soak';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run chaos -- [--orders N] [--concurrency N] [--workers N] [--seed N] [--rate N]
                        [--no-faults] [--fault-scale X|auto] [--deadline-minutes N] [--json FILE] [--keep-state]
                        [--temporal dev|cluster] [--postgres embedded|ha] [--no-streams]

Brings up its own PostgreSQL, Temporal, services, API and worker pool, and its
own NATS with the stream intake, the outbox relay (sending webhooks), the event
consumers and a webhook receiver; sends N orders, half through the HTTP API and
half as messages on the order stream (some published again minutes later with
the same message ID), while it kills and restarts every part (PostgreSQL
restarted and Temporal killed twice, NATS killed and restarted twice, the intake
and the relay SIGKILLed) and the webhook receiver flaps; waits for every saga to
close and every event to be published, consumed and delivered; audits the books,
checks every saga's result against its ledger rows, every accepted message
against its one order, every order change against its one event, every event
against the consumers and the receiver. Exits 1 on a violation or a stuck order.

--no-streams: the HTTP API alone, without NATS, the intake, the relay or webhooks.

--temporal cluster: a self-hosted Temporal cluster (npm run tools:install -- --only
cluster builds it) instead of the dev server; a history, a matching and a frontend
host are SIGKILLed in turn every 30 s (scaled like every fault) and started again.

--postgres ha: sagaflow's database as a primary with a synchronous standby under
pg_auto_failover (npm run tools:install -- --only cluster installs it), every process
on it through one multi-host DATABASE_URL; instead of the two PostgreSQL restarts,
the primary's PostgreSQL and keeper are SIGKILLed (the standby is promoted), then the
standby's (the primary goes on alone), each started again to rejoin as a standby.`;

class UsageError extends Error {}

function badTemporal(v: string): never {
  throw new UsageError(`--temporal: dev or cluster, not "${v}"`);
}

function badPostgres(v: string): never {
  throw new UsageError(`--postgres: embedded or ha, not "${v}"`);
}

function parseOptions() {
  return parseArgs({
    args: process.argv.slice(2),
    options: {
      orders: { type: 'string' },
      concurrency: { type: 'string' },
      workers: { type: 'string' },
      seed: { type: 'string' },
      rate: { type: 'string' },
      'no-faults': { type: 'boolean' },
      'fault-scale': { type: 'string' },
      'deadline-minutes': { type: 'string' },
      json: { type: 'string' },
      'keep-state': { type: 'boolean' },
      temporal: { type: 'string' },
      postgres: { type: 'string' },
      'no-streams': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

/** `npm run chaos -- --orders 200`: the fault soak (dev/chaos/soak.ts). */
runMain(USAGE, async () => {
  let parsed: ReturnType<typeof parseOptions>;
  try {
    parsed = parseOptions();
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const int = (name: string, v: string | undefined, min = 1): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < min) throw new UsageError(`--${name} must be an integer of at least ${min}`);
    return Number(v);
  };
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!(n > 0)) throw new UsageError(`--${name} must be a positive number`);
    return n;
  };
  let options: ChaosOptions;
  try {
    const deadlineMinutes = num('deadline-minutes', values['deadline-minutes']);
    options = {
      orders: int('orders', values.orders),
      concurrency: int('concurrency', values.concurrency),
      workers: int('workers', values.workers),
      seed: int('seed', values.seed, 0),
      ratePerSecond: num('rate', values.rate),
      faults: !values['no-faults'],
      faultScale: values['fault-scale'] === 'auto' ? 'auto' : num('fault-scale', values['fault-scale']),
      deadlineMs: deadlineMinutes === undefined ? undefined : deadlineMinutes * 60_000,
      keepState: values['keep-state'],
      streams: !values['no-streams'],
      temporal: values.temporal === undefined || values.temporal === 'dev' ? 'dev' : values.temporal === 'cluster' ? 'cluster' : badTemporal(values.temporal),
      postgres: values.postgres === undefined || values.postgres === 'embedded' ? 'embedded' : values.postgres === 'ha' ? 'ha' : badPostgres(values.postgres),
    };
    if (options.postgres === 'ha' && options.temporal === 'cluster') throw new UsageError('--postgres ha runs with the Temporal dev server, not --temporal cluster');
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`${err.message}\n\n${USAGE}`);
    return 2;
  }

  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (abort.signal.aborted) {
      console.error(`[chaos] ${sig} again: exiting now (children are killed on exit)`);
      process.exit(130);
    }
    console.error(`[chaos] ${sig}: stopping the traffic and cleaning up (again to exit at once)`);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = Date.now();
  const report = await runChaos({
    ...options,
    signal: abort.signal,
    log: (m) => console.log(`[chaos +${((Date.now() - started) / 1000).toFixed(1)}s] ${m}`),
  });
  console.log(`\n${formatReport(report)}`);
  if (values.json) {
    fs.writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`  report: ${values.json}`);
  }
  if (report.aborted) return 130;
  return report.ok ? 0 : 1;
});
