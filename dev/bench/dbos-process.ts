/**
 * The DBOS variant's process (dev/bench/run.ts spawns it; not for production): DBOS Transact
 * runs the saga's workflows in the process that starts them, as a DBOS application does, so the
 * driver sends it each order (IPC) and it answers when the workflow has ended.
 *
 * Needs DATABASE_URL (the application database), DBOS_SYSTEM_DATABASE_URL (a database of the
 * run's own, dropped at the end), PAYMENT_PROVIDER_URL and CARRIER_URL. SIGTERM stops it.
 */
import { createPool } from '../../src/db/pool';
import { startDbosVariant } from './dbos';
import { onStop, runChild, serveSagas } from './processes';

async function main(): Promise<void> {
  const env = (name: string) => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set`);
    return v;
  };
  const db = createPool({ connectionString: env('DATABASE_URL'), max: 10 });
  const dbos = await startDbosVariant(
    { systemDatabaseUrl: env('DBOS_SYSTEM_DATABASE_URL'), databaseUrl: env('DATABASE_URL') },
    { db, paymentProviderUrl: env('PAYMENT_PROVIDER_URL'), carrierUrl: env('CARRIER_URL'), providerTimeoutMs: 5000 },
  );
  const served = serveSagas((order, workflowId) => dbos.run(order, workflowId));
  const stopped = new Promise<void>((resolve) => onStop(resolve));
  served.ready();
  await stopped;
  await dbos.stop();
  await db.end();
}

runChild(main);
