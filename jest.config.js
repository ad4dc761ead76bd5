const toolkit = require('./packages/toolkit/package.json');

/**
 * `@sagaflow/toolkit/<subpath>` inside the repo resolves to the toolkit's sources,
 * as the `sagaflow-source` condition of packages/toolkit/package.json's exports says.
 */
const sourceAliases = Object.fromEntries(
  Object.entries(toolkit.exports)
    .filter(([, target]) => typeof target === 'object' && target['sagaflow-source'])
    .map(([subpath, target]) => [
      `^${toolkit.name}${subpath.slice(1)}$`.replace(/[./]/g, (c) => (c === '.' ? '\\.' : c)),
      `<rootDir>/packages/toolkit/${target['sagaflow-source'].slice(2)}`,
    ]),
);

/** Real Temporal dev server and real PostgreSQL come up once in globalSetup; test files share them. */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // The bounded mutation run has a command of its own (npm run test:mutation), run alone after the suites.
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/mutation/'],
  moduleNameMapper: sourceAliases,
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  testTimeout: 120000,
  reporters: ['default', '<rootDir>/test/helpers/summary-reporter.js'],
};
