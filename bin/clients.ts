import { createApiClient, revokeApiClient } from '../src/api/auth';
import { withDatabase } from '../src/db/with-database';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run clients -- create NAME [--admin] [--key-only]
       npm run clients -- revoke NAME|ID

create: creates an API client and prints its key, once: only a hash is stored.
  --key-only prints the key alone, for KEY=$(npm run -s clients -- create NAME --key-only).
  --admin makes an operator's key: it reaches the /admin routes (sagas: list, show,
  retry-compensation, resolve, cancel, terminate) and nothing else; an ordinary
  key reaches the order and webhook routes and not /admin.
revoke: refuses the client's key from its next request on (401), as for a key
  that leaked. Its orders and sagas are untouched. Exit 1 if no such client.
NAME: 1-64 letters, digits, _ . -`;

runMain(USAGE, async () => {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const keyOnly = args.includes('--key-only');
  const admin = args.includes('--admin');
  const [command, name, ...rest] = args.filter((a) => a !== '--key-only' && a !== '--admin');
  if (command === 'revoke' && name && !rest.length && !keyOnly && !admin) {
    return withDatabase(async (db) => {
      const outcome = await revokeApiClient(db, name);
      switch (outcome.kind) {
        case 'unknown':
          console.error(`no client named or with ID "${name}"`);
          return 1;
        case 'already-revoked':
          console.log(`client ${outcome.client.name} (${outcome.client.id}) was already revoked at ${outcome.revokedAt.toISOString()}`);
          return 0;
        case 'revoked':
          console.log(`client ${outcome.client.name} (${outcome.client.id}) revoked: its key is refused from now on`);
          return 0;
      }
    });
  }
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
    const client = await createApiClient(db, name, { scope: admin ? 'admin' : 'orders' });
    if (keyOnly) console.log(client.apiKey);
    else {
      console.log(`client ${client.name} (${client.id})${admin ? ', scope admin: the /admin routes only' : ''}`);
      console.log(`API key (shown once; store it now): ${client.apiKey}`);
    }
    return 0;
  });
});
