const base = require('./jest.config');
const { scope } = require('./test/mutation/scopes');

/**
 * The tests one mutation scope (SAGAFLOW_MUTATION_SCOPE, test/mutation/scopes.js)
 * measures its code against, on the real PostgreSQL and Temporal server that
 * bin/mutate.ts brings up once for the whole run.
 */
const s = scope(process.env.SAGAFLOW_MUTATION_SCOPE ?? 'ci');

module.exports = {
  ...base,
  testMatch: s.tests.map((t) => `<rootDir>/test/${t}`),
  testPathIgnorePatterns: ['/node_modules/'],
  setupFiles: [...(base.setupFiles ?? []), ...(s.inWorkflows ? ['<rootDir>/test/mutation/carry-active-mutant.ts'] : [])],
  reporters: ['default'],
};
