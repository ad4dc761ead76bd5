import { loadConfig } from '../src/config';
import { redact, startStack } from '../dev/stack';
import { runMain } from './run';

/** Starts the dev stack and keeps it up, printing how to point workers at it. */
runMain(async () => {
  const config = loadConfig();
  const stack = await startStack(config, (m) => console.log(`[stack] ${m}`));
  console.log('\nThe stack is up. In another shell, start a worker with:\n');
  console.log(
    `  DATABASE_URL='${stack.databaseUrl}' TEMPORAL_ADDRESS=${stack.temporal.address} ` +
      `PAYMENT_PROVIDER_URL=${stack.paymentProviderUrl} CARRIER_URL=${stack.carrierUrl} npm run worker\n`,
  );
  if (stack.temporal.uiUrl) console.log(`Temporal UI: ${stack.temporal.uiUrl}`);
  console.log(`(database ${redact(stack.databaseUrl)}; Ctrl-C stops everything)`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stack.stop();
});
