// @ts-check
import fs from 'node:fs';
/**
 * Mutation testing of the core (npm run mutate; bin/mutate.ts brings up the real
 * PostgreSQL and Temporal server once and runs this). SAGAFLOW_MUTATION_SCOPE
 * picks what is mutated: `core` (the default: everything below), or `ci`, the
 * bounded part CI runs, npm run test:mutation (the ledger's external steps and their compensations,
 * tested by the activity suite alone).
 */
/** The lines of `file` from the line starting with `from` up to (not including) the one starting with `to`. */
function between(file, from, to) {
  const lines = fs.readFileSync(new URL(file, import.meta.url), 'utf8').split('\n');
  const start = lines.findIndex((l) => l.startsWith(from));
  const end = lines.findIndex((l, i) => i > start && l.startsWith(to));
  if (start < 0 || end < 0) throw new Error(`${file}: no lines from "${from}" to "${to}"`);
  return `${file}:${start + 1}-${end}`;
}

const scopes = {
  core: [
    'src/ledger/ledger.ts',
    'src/ledger/fingerprint.ts',
    'src/edge/keys.ts',
    'src/api/create-order.ts',
    'src/api/auth.ts',
    'activities/payments.ts',
    'activities/shipping.ts',
    'activities/inventory.ts',
    'activities/orders.ts',
    'activities/fraud.ts',
    'activities/provider-http.ts',
    'activities/providers.ts',
  ],
  // The ledger's external steps and their compensations, and what an undo is told of its forward step.
  ci: [
    between('src/ledger/ledger.ts', 'export async function forwardEffect', '/** The ledger operations of one step'),
    between('src/ledger/ledger.ts', 'async function runExternalStep', 'async function readLedger'),
  ],
};
const scope = process.env.SAGAFLOW_MUTATION_SCOPE ?? 'core';
if (!(scope in scopes)) throw new Error(`SAGAFLOW_MUTATION_SCOPE: one of ${Object.keys(scopes).join(', ')}`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'jest',
  jest: { projectType: 'custom', configFile: 'jest.mutation.config.js', enableFindRelatedTests: false },
  mutate: scopes[/** @type {keyof typeof scopes} */ (scope)],
  coverageAnalysis: 'perTest',
  concurrency: scope === 'ci' ? 1 : 2,
  // A mutant that makes a test wait forever is a timeout (detected); the bounded run cannot wait a minute for each.
  timeoutMS: scope === 'ci' ? 15_000 : 60_000,
  ignoreStatic: true,
  disableTypeChecks: true,
  reporters: ['clear-text', 'progress', 'json'],
  jsonReporter: { fileName: `reports/mutation/${scope}.json` },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  ignorePatterns: ['dist', '.sagaflow', 'coverage', 'reports', 'deploy', 'docs'],
};
