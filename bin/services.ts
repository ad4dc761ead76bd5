import { ConfigError, loadConfig } from '../src/config';
import { migratePatiently, patientlyAtStartup } from '../src/db/migrate';
import { createPool } from '../src/db/pool';
import { startCarrier } from '../dev/services/carrier';
import { startPaymentProvider } from '../dev/services/payment-provider';
import { runMain } from '../src/run-main';
import { createLogger, lineLogger } from '../src/observability/log';

const USAGE = `usage: npm run services

The simulated payment provider and carrier, as one long-running process, on
SERVICES_HOST with PAYMENT_PROVIDER_PORT (4010) and CARRIER_PORT (4020). They
keep their own tables in DATABASE_URL. For development and compose only.`;

/** The payment provider and the carrier as one long-running process (for compose and manual runs). */
runMain(USAGE, async () => {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required by the services' }]);
  const logger = createLogger({ service: 'sagaflow-services', level: config.LOG_LEVEL });
  const log = lineLogger(logger);
  // A database restarting or a connection terminated at start-up is waited out, then a clear error.
  await migratePatiently(config.DATABASE_URL, { log });
  const db = createPool({ connectionString: config.DATABASE_URL, max: config.DATABASE_POOL_MAX });
  // Each service creates its own tables as it starts: the same patience.
  const provider = await patientlyAtStartup('the payment provider', () => startPaymentProvider({ db, host: config.SERVICES_HOST, port: config.PAYMENT_PROVIDER_PORT }), { log });
  const carrier = await patientlyAtStartup('the carrier', () => startCarrier({ db, host: config.SERVICES_HOST, port: config.CARRIER_PORT }), { log });
  logger.info({ paymentProvider: provider.url, carrier: carrier.url }, 'services listening');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await provider.close();
  await carrier.close();
  await db.end();
});
