import { loadConfig, ConfigError } from '../src/config';
import { migratePatiently } from '../src/db/migrate';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run migrate

Applies sagaflow's database migrations to DATABASE_URL and prints which ran
("up to date" if none). Safe to run from several processes at once.`;

runMain(USAGE, async () => {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required to migrate' }]);
  const applied = await migratePatiently(config.DATABASE_URL, { log: (l) => console.error(`${String(l.msg)} (attempt ${String(l.attempt)}): ${String(l.error)}`) });
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'up to date');
});
