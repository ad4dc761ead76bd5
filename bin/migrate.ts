import { parseArgs } from 'node:util';
import { loadConfig, ConfigError, UsageError } from '../src/config';
import { migratePatiently } from '../src/db/migrate';
import { runMain } from '../src/run-main';
import { databaseLabel, databaseProblem } from '../src/startup';

const USAGE = `usage: npm run migrate -- [--wait SECONDS]

Applies sagaflow's database migrations to DATABASE_URL and prints which ran
("up to date" if none). Safe to run from several processes at once. A database
that cannot be reached is tried again for --wait seconds (60); then, or at once
for a database that refuses (a wrong password, no such database), one line
says why and it exits 3.`;

runMain(USAGE, async () => {
  let wait: string | undefined;
  try {
    ({ values: { wait } } = parseArgs({ options: { wait: { type: 'string' } } }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const withinMs = wait === undefined ? 60_000 : Number(wait) * 1000;
  if (!Number.isFinite(withinMs) || withinMs < 0) throw new UsageError(`--wait: expected seconds (a number >= 0), got "${wait}"`);
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required to migrate' }]);
  const applied = await migratePatiently(config.DATABASE_URL, {
    withinMs,
    log: (l) => console.error(`${String(l.msg)} (attempt ${String(l.attempt)}): ${String(l.error)}`),
  }).catch((err: unknown) => {
    // PostgreSQL's own refusal (it has a SQLSTATE): one line naming it, not a stack.
    if (typeof (err as { code?: unknown }).code === 'string') throw databaseProblem(`migrations on ${databaseLabel(config.DATABASE_URL!)}`, err);
    throw err;
  });
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'up to date');
});
