const base = require('./jest.config');

/**
 * The cluster project (`npm run test:cluster`): the same real PostgreSQL and dev
 * server as the main suite, plus a self-hosted Temporal cluster started by the
 * tests themselves (test-cluster/), so they can kill and restart its hosts.
 */
module.exports = { ...base, roots: ['<rootDir>/test-cluster'], testTimeout: 300000 };
