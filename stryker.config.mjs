// @ts-check
import { createRequire } from 'node:module';

/**
 * Mutation testing of the core (npm run mutate; bin/mutate.ts brings up the real
 * PostgreSQL and Temporal server once and runs this once per scope).
 * SAGAFLOW_MUTATION_SCOPE names the scope: test/mutation/scopes.js says what each
 * plants defects in and which tests must catch them.
 */
const { scope } = createRequire(import.meta.url)('./test/mutation/scopes.js');
const name = process.env.SAGAFLOW_MUTATION_SCOPE ?? 'ci';
const s = scope(name);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'jest',
  jest: { projectType: 'custom', configFile: 'jest.mutation.config.js', enableFindRelatedTests: false },
  mutate: s.mutate,
  // Inside the workflow sandbox Stryker sees no coverage: every mutant runs every test of its scope.
  coverageAnalysis: s.inWorkflows ? 'off' : 'perTest',
  concurrency: s.concurrency ?? 2,
  // A mutant that makes a test wait forever is a timeout (detected); a run cannot wait long for each.
  timeoutMS: s.timeoutMS ?? 60_000,
  ignoreStatic: !s.inWorkflows,
  disableTypeChecks: true,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: `reports/mutation/${name}.json` },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  ignorePatterns: ['dist', '.sagaflow', 'coverage', 'reports', 'deploy', 'docs'],
};
