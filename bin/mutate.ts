import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config';
import { freePort } from '../src/ports';
import { startEmbeddedPostgres, type RunningPostgres } from '../dev/postgres';
import { startTemporalDevServer, type TemporalServer } from '../dev/temporal';
import { runMain } from './run';

const USAGE = `usage: npm run mutate [-- --scope core|ci]

Mutation testing of the core with StrykerJS and its Jest runner: one small defect
at a time is planted in the ledger, the Idempotency-Key records, the API's use
case and auth and the activities, and the tests that cover it run on the real
PostgreSQL and Temporal server (DATABASE_URL and TEMPORAL_ADDRESS, or an
embedded PostgreSQL and the dev server, started once for the whole run).

--scope core   everything above (the default; hours on two cores)
--scope ci     the bounded part CI runs: the ledger against the activity suite

Prints the mutation score and every surviving mutant not listed, with its
reason, in test/mutation/equivalent.json; exit 1 if there is one.
Report: reports/mutation/<scope>.json`;

const ROOT = path.resolve(__dirname, '..');

interface Mutant {
  mutatorName: string;
  replacement?: string;
  status: string;
  location: { start: { line: number; column: number } };
}
interface Report {
  files: Record<string, { source: string; mutants: Mutant[] }>;
}
/** A surviving mutant that no test can kill, and why. Matched by file, mutator, replacement and its line's text. */
interface Equivalent {
  file: string;
  mutator: string;
  replacement: string;
  line: string;
  reason: string;
}

runMain(USAGE, async () => {
  const { values } = parseArgs({ options: { scope: { type: 'string', default: 'core' } } });
  const scope = values.scope!;
  if (scope !== 'core' && scope !== 'ci') {
    console.error(`--scope: core or ci, not "${scope}"\n\n${USAGE}`);
    return 2;
  }
  const config = loadConfig();
  const log = (m: string) => process.stderr.write(`[mutate] ${m}\n`);
  const stack: { pg?: RunningPostgres; temporal?: TemporalServer; dir?: string } = {};
  try {
    let databaseUrl = config.DATABASE_URL;
    if (!databaseUrl) {
      stack.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-mutate-pg-'));
      fs.chmodSync(stack.dir, 0o755);
      stack.pg = await startEmbeddedPostgres({ dataDir: path.join(stack.dir, 'data'), port: await freePort(), persistent: false, log });
      databaseUrl = stack.pg.url;
    }
    let temporalAddress = config.TEMPORAL_ADDRESS;
    if (!temporalAddress) {
      stack.temporal = await startTemporalDevServer({ cliPath: config.TEMPORAL_CLI_PATH, log });
      temporalAddress = stack.temporal.address;
    }
    log(`PostgreSQL ${databaseUrl}, Temporal ${temporalAddress}; scope ${scope}`);
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [path.join(ROOT, 'node_modules', '@stryker-mutator', 'core', 'bin', 'stryker.js'), 'run', 'stryker.config.mjs'], {
        cwd: ROOT,
        stdio: 'inherit',
        env: { ...process.env, DATABASE_URL: databaseUrl, TEMPORAL_ADDRESS: temporalAddress, SAGAFLOW_MUTATION_SCOPE: scope },
      });
      child.once('exit', (c) => resolve(c));
    });
    if (code !== 0) {
      console.error(`stryker exited ${code}`);
      return 1;
    }
    return summarize(path.join(ROOT, 'reports', 'mutation', `${scope}.json`));
  } finally {
    await stack.temporal?.stop();
    await stack.pg?.stop();
    if (stack.dir) fs.rmSync(stack.dir, { recursive: true, force: true });
  }
});

/** Prints the score and the survivors no reason accounts for; 1 if there is one. */
function summarize(reportPath: string): number {
  const report = JSON.parse(fs.readFileSync(reportPath, 'utf8')) as Report;
  const equivalents = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'mutation', 'equivalent.json'), 'utf8')) as Equivalent[];
  const counts: Record<string, number> = {};
  const unexplained: string[] = [];
  let equivalent = 0;
  for (const [file, { source, mutants }] of Object.entries(report.files)) {
    const lines = source.split('\n');
    for (const m of mutants) {
      counts[m.status] = (counts[m.status] ?? 0) + 1;
      if (m.status !== 'Survived' && m.status !== 'NoCoverage') continue;
      const line = (lines[m.location.start.line - 1] ?? '').trim();
      const known = equivalents.find(
        (e) => e.file === file && e.mutator === m.mutatorName && e.replacement === (m.replacement ?? '') && e.line === line,
      );
      if (known) equivalent += 1;
      else unexplained.push(`${file}:${m.location.start.line}  ${m.mutatorName} → ${JSON.stringify(m.replacement ?? '')}  (${m.status})\n    ${line}`);
    }
  }
  const detected = (counts.Killed ?? 0) + (counts.Timeout ?? 0);
  const undetected = (counts.Survived ?? 0) + (counts.NoCoverage ?? 0);
  const total = detected + undetected;
  const pct = (n: number, d: number) => (d ? ((100 * n) / d).toFixed(1) : '100.0');
  console.log(`mutants: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`mutation score: ${pct(detected, total)}% (${detected} of ${total} detected); ` +
    `${pct(detected, total - equivalent)}% of the ${total - equivalent} that are not equivalent (${equivalent} named in test/mutation/equivalent.json)`);
  if (unexplained.length) {
    console.log(`${unexplained.length} surviving mutant(s) neither killed nor named as equivalent:`);
    for (const u of unexplained) console.log(`  ${u}`);
    return 1;
  }
  return 0;
}
