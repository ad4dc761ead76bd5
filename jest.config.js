/** Real Temporal dev server and real PostgreSQL come up once in globalSetup; test files share them. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  testTimeout: 120000,
  reporters: ['default', '<rootDir>/test/helpers/summary-reporter.js'],
};
