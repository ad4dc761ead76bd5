const base = require('./jest.config');

/**
 * The tests the mutation run (npm run mutate) measures the core against: those
 * that drive the ledger, the Idempotency-Key records, the API's use case and
 * auth and the activities, on the real PostgreSQL and Temporal server that
 * dev/mutate.ts brings up once for the whole run. The slow fault suites (lost
 * tasks, chaos) are left to the main suite.
 */
const ci = process.env.SAGAFLOW_MUTATION_SCOPE === 'ci';

module.exports = {
  ...base,
  // The bounded part CI runs: the ledger, against the activity suite.
  testMatch: ci ? ['<rootDir>/test/integration/activities.test.ts'] : [
    '<rootDir>/test/integration/activities.test.ts',
    '<rootDir>/test/integration/services.test.ts',
    '<rootDir>/test/integration/clients.test.ts',
    '<rootDir>/test/integration/reliability.test.ts',
    '<rootDir>/test/integration/api.test.ts',
    '<rootDir>/test/integration/order-saga.test.ts',
    '<rootDir>/test/integration/saga-helper.test.ts',
    '<rootDir>/test/integration/ledger-retention.test.ts',
    '<rootDir>/test/unit/fingerprint.test.ts',
  ],
  reporters: ['default'],
};
