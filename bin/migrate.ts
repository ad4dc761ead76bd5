import { loadConfig, ConfigError } from '../src/config';
import { migrate } from '../src/db/migrate';
import { runMain } from './run';

runMain(async () => {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required to migrate' }]);
  const applied = await migrate(config.DATABASE_URL);
  console.log(applied.length ? `applied: ${applied.join(', ')}` : 'up to date');
});
