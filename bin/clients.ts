import { createApiClient } from '../src/api/auth';
import { withDatabase } from '../src/db/with-database';
import { runMain } from './run';

const USAGE = `usage: npm run clients -- create NAME [--key-only]

Creates an API client and prints its key, once: only a hash is stored.
--key-only prints the key alone, for KEY=$(npm run -s clients -- create NAME --key-only).
NAME: 1-64 letters, digits, _ . -`;

runMain(USAGE, async () => {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const keyOnly = args.includes('--key-only');
  const [command, name, ...rest] = args.filter((a) => a !== '--key-only');
  if (command !== 'create' || !name || rest.length) {
    console.error(USAGE);
    return 2;
  }
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    console.error(`client name "${name}": use 1-64 letters, digits, _ . -`);
    return 2;
  }
  return withDatabase(async (db) => {
    const taken = await db.query('SELECT 1 FROM api_clients WHERE name = $1', [name]);
    if (taken.rowCount) {
      console.error(`a client named "${name}" already exists, and its key is not stored; create one under another name`);
      return 1;
    }
    const client = await createApiClient(db, name);
    if (keyOnly) console.log(client.apiKey);
    else {
      console.log(`client ${client.name} (${client.id})`);
      console.log(`API key (shown once; store it now): ${client.apiKey}`);
    }
    return 0;
  });
});
