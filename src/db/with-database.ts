import { ConfigError, loadConfig } from '../config';
import { migrate } from './migrate';
import { createPool, type Db } from './pool';

/**
 * The database at DATABASE_URL for a one-shot command, migrated, handed to `fn`
 * and closed after it: a missing DATABASE_URL is a configuration error naming it.
 */
export async function withDatabase<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required (npm run stack prints it)' }]);
  await migrate(config.DATABASE_URL);
  const db = createPool({ connectionString: config.DATABASE_URL });
  try {
    return await fn(db);
  } finally {
    await db.end();
  }
}
