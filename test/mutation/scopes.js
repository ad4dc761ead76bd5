// @ts-check
const fs = require('node:fs');
const path = require('node:path');

/**
 * What the mutation run (npm run mutate) plants defects in, scope by scope, and
 * the test files that must catch them, on the real PostgreSQL and Temporal
 * server. Read by stryker.config.mjs (what to mutate, how) and
 * jest.mutation.config.js (what to run). `core` is every scope but `ci`, one
 * after the other; `ci` is the bounded part CI runs (npm run test:mutation).
 */
const ROOT = path.resolve(__dirname, '../..');

/** The lines of `file` from the line starting with `from` up to (not including) the one starting with `to`. */
function between(file, from, to) {
  const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const start = lines.findIndex((l) => l.startsWith(from));
  const end = lines.findIndex((l, i) => i > start && l.startsWith(to));
  if (start < 0 || end < 0) throw new Error(`${file}: no lines from "${from}" to "${to}"`);
  return `${file}:${start + 1}-${end}`;
}

/** One `file:N-N` range for each line of `file` that matches `pattern`. */
function linesMatching(file, pattern) {
  const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
  const ranges = lines.flatMap((l, i) => (pattern.test(l) ? [`${file}:${i + 1}-${i + 1}`] : []));
  if (!ranges.length) throw new Error(`${file}: no line matches ${pattern}`);
  return ranges;
}

/**
 * @typedef {object} Scope
 * @property {string} about what the scope covers, in a few words (npm run mutate's usage lists it)
 * @property {string[]} mutate files (or line ranges) to plant defects in
 * @property {string[]} tests test files, relative to test/
 * @property {boolean} [inWorkflows] the code runs inside Temporal's workflow sandbox: Stryker cannot see which
 *   test covers a mutant there, so every mutant runs every test of the scope, and test/mutation/carry-active-mutant.ts
 *   writes the planted mutant into each workflow bundle
 * @property {number} [timeoutMS] how long past the dry run's time a mutant may make a test wait before it counts as a timeout
 * @property {number} [concurrency] test processes at once
 * @property {string[]} [alsoDetectedBy] scopes that plant the same defects and run other tests: a mutant their
 *   report (reports/mutation/<scope>.json) shows detected counts as detected here
 */

/** @type {Record<string, Scope>} */
const scopes = {
  ledger: {
    about: 'the ledger and fingerprints',
    mutate: ['packages/toolkit/src/ledger/ledger.ts', 'packages/toolkit/src/ledger/fingerprint.ts'],
    tests: ['integration/ledger.test.ts', 'integration/activities.test.ts', 'integration/ledger-retention.test.ts', 'integration/services.test.ts', 'unit/fingerprint.test.ts'],
  },
  api: {
    about: "the Idempotency-Key records, the API's use case and auth",
    mutate: ['packages/toolkit/src/edge/keys.ts', 'src/api/create-order.ts', 'src/api/auth.ts'],
    tests: ['integration/edge.test.ts', 'integration/api.test.ts', 'integration/create-order.test.ts', 'integration/clients.test.ts'],
    alsoDetectedBy: ['api-faults'],
  },
  // The use case's failure paths (a saga that cannot start, an insert that fails after the claim, lost
  // requests recovered), against the fault tests; apart from api, since every request goes through
  // the use case and each fault test stops or starves a worker or server.
  'api-faults': {
    about: "the API's use case, against the fault and recovery tests",
    mutate: ['src/api/create-order.ts'],
    tests: ['integration/reliability.test.ts'],
    alsoDetectedBy: ['api'],
  },
  activities: {
    about: "the order saga's activities and their provider calls",
    mutate: [
      'activities/payments.ts', 'activities/shipping.ts', 'activities/inventory.ts', 'activities/orders.ts',
      'activities/fraud.ts', 'activities/provider-http.ts', 'activities/providers.ts',
    ],
    // The activities' own suite, not the order saga's: each of its tests would build a worker per mutant.
    tests: ['integration/activities.test.ts', 'integration/services.test.ts', 'unit/provider-http.test.ts'],
  },
  // The saga helper's pure parts, outside the sandbox (so with coverage): step keys, failure reading, status, backoff.
  'saga-parts': {
    about: "the saga helper's step keys, failure reading, status and backoff, outside the sandbox",
    mutate: ['packages/toolkit/src/workflow/keys.ts', 'packages/toolkit/src/workflow/failures.ts', 'packages/toolkit/src/workflow/status.ts'],
    tests: ['unit/saga-parts.test.ts', 'integration/ledger.test.ts'],
  },
  saga: {
    about: 'the saga helper, inside the workflow sandbox',
    mutate: ['packages/toolkit/src/workflow/saga.ts'],
    tests: ['integration/saga-helper.test.ts'],
    alsoDetectedBy: ['saga-replay'],
    inWorkflows: true,
    timeoutMS: 30_000,
  },
  // A patch (its marker's name, the condition it guards) decides how a saga already in flight replays;
  // a fresh run takes the patched path whatever the name, so only recorded histories tell them apart.
  'saga-replay': {
    about: "the saga helper's patches, against the recorded histories of the order saga",
    // Read when asked for, as ci's lines are.
    get mutate() {
      return linesMatching('packages/toolkit/src/workflow/saga.ts', /patched\(|_PATCH = '/);
    },
    tests: ['replay/replay.test.ts'],
    alsoDetectedBy: ['saga'],
    inWorkflows: true,
    timeoutMS: 30_000,
  },
  // The ledger's external steps and their compensations, and what an undo is told of its forward step.
  ci: {
    about: "the bounded part CI runs: how the ledger's external forward step settles its call (the record in one message or apart, a concurrent settler, the failure) against the activity and ledger suites",
    // About 20 mutants, two at a time: about a minute and a half alone on the machine. The claim before the call,
    // forwardEffect and runExternalUndo (CI's part until the suite outgrew its time budget) are
    // mutated with the rest in the ledger scope.
    // Read when asked for: inside another scope's run, this file is loaded from Stryker's sandbox,
    // where the ledger's code is instrumented and these lines are not to be found.
    get mutate() {
      return [between('packages/toolkit/src/ledger/ledger.ts', '  const outcome = await step.call();', 'async function runExternalUndo')];
    },
    tests: ['integration/activities.test.ts', 'integration/ledger.test.ts'],
    concurrency: 2,
    timeoutMS: 15_000,
  },
};

/** The scopes `core` runs, in order. */
const CORE = ['ledger', 'api', 'api-faults', 'activities', 'saga-parts', 'saga', 'saga-replay'];

/** @param {string} name */
function scope(name) {
  const s = scopes[name];
  if (!s) throw new Error(`mutation scope: one of ${[...Object.keys(scopes), 'core'].join(', ')}, not "${name}"`);
  return s;
}

module.exports = { scopes, CORE, scope };
