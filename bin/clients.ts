import { createApiClient } from '../src/api/auth';
import { ConfigError, loadConfig } from '../src/config';
import { migrate } from '../src/db/migrate';
import { createPool } from '../src/db/pool';
import { runMain } from './run';

/** `npm run clients -- create <name>`: creates an API client and prints its key, once. */
runMain(async () => {
  const [command, name] = process.argv.slice(2);
  if (command !== 'create' || !name) {
    console.error('usage: npm run clients -- create <name>');
    return 2;
  }
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required' }]);
  await migrate(config.DATABASE_URL);
  const db = createPool({ connectionString: config.DATABASE_URL });
  try {
    const client = await createApiClient(db, name);
    console.log(`client ${client.name} (${client.id})`);
    console.log(`API key (shown once; store it now): ${client.apiKey}`);
  } finally {
    await db.end();
  }
  return 0;
});
