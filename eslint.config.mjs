import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const nodeBuiltins = [
  'assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs', 'fs/promises', 'http',
  'http2', 'https', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline', 'stream', 'timers', 'tls', 'url',
  'util', 'v8', 'vm', 'worker_threads', 'zlib',
];

const DEV_FENCE = { group: ['**/dev', '**/dev/**'], message: 'Production code must not import dev/ (the dev stack and fakes).' };
const ORDER_DOMAIN_FENCE = {
  group: ['**/order/**', '**/order-saga', '**/workflows/index', '**/orders/**', '**/src/orders/**', '**/src/api/**', '**/activities', '**/activities/**', '**/workers/**', '**/bin/**'],
  message: 'The generic toolkit must not import the order domain.',
};
/**
 * Workflow code (a saga's body, the saga helper that runs inside it) is loaded by the worker's bundle
 * alone; callers talk to a saga through its contract (workflows/order/: ids, types, definitions).
 */
const WORKFLOW_BODY_FENCE = {
  regex: '(^|/)workflows(/index|/order-saga)?$|(^|/)workflow(/index|/saga|/replay-probe)$|^@sagaflow/toolkit/workflow$',
  message: "Import a saga's contract (workflows/order/definitions, ids, types), never workflow code.",
};
/** Entry points that run in production; the others (demo, stack, services, chaos, ...) are dev tools. */
const PRODUCTION_ENTRY_POINTS = ['bin/api.ts', 'bin/codec-server.ts', 'bin/worker.ts', 'bin/pool.ts', 'bin/migrate.ts', 'bin/clients.ts', 'bin/replay.ts', 'bin/audit.ts', 'bin/sagas.ts'];

/** Workflow code runs in Temporal's deterministic sandbox: no I/O, no clock, no environment. */
const workflowImports = (...extra) => [
  'error',
  {
    paths: [
      ...nodeBuiltins.flatMap((m) => [
        { name: m, message: 'Node built-ins are not allowed in workflow code.' },
        { name: `node:${m}`, message: 'Node built-ins are not allowed in workflow code.' },
      ]),
      { name: 'pg', message: 'Workflows must not touch the database; use an activity.' },
    ],
    patterns: [
      { group: ['pg', 'pg/*'], message: 'Workflows must not touch the database; use an activity.' },
      { group: ['node:*'], message: 'Node built-ins are not allowed in workflow code.' },
      {
        group: ['**/src/**', '!**/packages/toolkit/src/workflow', '!**/packages/toolkit/src/workflow/**', '**/activities', '**/activities/**'],
        allowTypeImports: true,
        message: 'Workflow code may import only types from outside workflows/.',
      },
      DEV_FENCE,
      ...extra,
    ],
  },
];

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.sagaflow/', 'coverage/', 'test/helpers/summary-reporter.js', 'jest.config.js', 'jest.cluster.config.js', 'jest.mutation.config.js', 'stryker.config.mjs', '.stryker-tmp/', 'reports/', 'packages/toolkit/dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // CommonJS: read by the Jest and Stryker configurations, or loaded by ts-node.
    files: ['test/mutation/scopes.js', 'dev/toolkit-source-register.js', 'dev/ts-node-cached-transpiler.js', 'test/package/scratch/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: { ...globals.node },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    // Production code never imports the dev stack, the simulated provider and carrier, or the soak.
    files: ['src/**/*.ts', 'activities/**/*.ts', 'workers/**/*.ts', ...PRODUCTION_ENTRY_POINTS],
    rules: { 'no-restricted-imports': ['error', { patterns: [DEV_FENCE] }] },
  },
  {
    // src/ (the API, the services behind it) never loads workflow code: only the worker bundles it.
    files: ['src/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [DEV_FENCE, WORKFLOW_BODY_FENCE] }] },
  },
  {
    // bin/ holds entry points only: what the dev tools share with them lives in src/ or dev/.
    files: ['dev/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/bin', '**/bin/**'], message: 'dev/ must not import bin/ (entry points only); share the code through src/ or dev/.' }] },
      ],
    },
  },
  {
    // The toolkit (@sagaflow/toolkit: /workflow, /ledger, /edge, /inbox, /outbox, /replay) knows no domain: a second saga
    // can use it exactly as the order saga does.
    files: ['packages/toolkit/src/**/*.ts'],
    ignores: ['packages/toolkit/src/workflow/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [DEV_FENCE, ORDER_DOMAIN_FENCE, WORKFLOW_BODY_FENCE] }] },
  },
  {
    // Workflow code runs in Temporal's deterministic sandbox: no I/O, no clock, no environment.
    files: ['workflows/**/*.ts', 'packages/toolkit/src/workflow/**/*.ts', 'test/fixtures/**/workflows.ts'],
    rules: {
      'no-restricted-imports': workflowImports(),
      'no-restricted-properties': [
        'error',
        { object: 'process', property: 'env', message: 'Workflows are deterministic: pass configuration as input.' },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'Workflows are deterministic: no process access.' },
        { name: 'setTimeout', message: 'Use sleep() from @temporalio/workflow.' },
        { name: 'setInterval', message: 'Use sleep() from @temporalio/workflow.' },
      ],
    },
  },
  {
    files: ['packages/toolkit/src/workflow/**/*.ts'],
    rules: { 'no-restricted-imports': workflowImports(ORDER_DOMAIN_FENCE) },
  },
  {
    // The example sagas are built on the public API alone: `sagaflow/*` by package name,
    // never a relative path out of their own folder into the internals.
    files: ['examples/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['../../*', '../../**'], message: "Import the toolkit by package name (@sagaflow/toolkit/workflow, @sagaflow/toolkit/ledger, ...)." }] },
      ],
    },
  },
  {
    files: ['examples/**/workflows.ts'],
    rules: { 'no-restricted-imports': workflowImports({ group: ['../../*', '../../**'], message: 'Import the toolkit by package name.' }) },
  },
);
