import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const nodeBuiltins = [
  'assert', 'buffer', 'child_process', 'cluster', 'crypto', 'dgram', 'dns', 'events', 'fs', 'fs/promises', 'http',
  'http2', 'https', 'net', 'os', 'path', 'perf_hooks', 'process', 'readline', 'stream', 'timers', 'tls', 'url',
  'util', 'v8', 'vm', 'worker_threads', 'zlib',
];

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', '.sagaflow/', 'coverage/', 'test/helpers/summary-reporter.js', 'jest.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
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
    // Workflow code runs in Temporal's deterministic sandbox: no I/O, no clock, no environment.
    files: ['workflows/**/*.ts', 'test/fixtures/**/workflows.ts'],
    rules: {
      'no-restricted-imports': [
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
              group: ['**/src/**', '**/activities', '**/activities/**'],
              allowTypeImports: true,
              message: 'Workflow code may import only types from outside workflows/.',
            },
          ],
        },
      ],
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
);
