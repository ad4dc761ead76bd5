#!/usr/bin/env node
/**
 * `sagaflow <command> [flags]`: the production commands in one executable
 * (package.json `bin`), so `npx sagaflow worker` runs the compiled worker.
 * Each command is the same module `npm run <command>` runs; it reads its own
 * flags and answers `--help`.
 */
const COMMANDS: Record<string, string> = {
  api: 'the HTTP API',
  'codec-server': 'decodes Temporal payloads for the UI and CLI, behind its own token',
  intake: 'order requests from a NATS JetStream stream; dead letters and their requeue',
  relay: "the outbox relay: order events to JetStream, in order per order; its lag",
  worker: 'a worker process (all task queues, or --queues)',
  pool: 'N worker processes per task queue, restarted when they exit',
  migrate: "apply sagaflow's database migrations to DATABASE_URL",
  clients: 'create API clients (their keys are shown once), revoke them',
  inventory: 'list, count and receive stock',
  audit: "check sagaflow's own books: orders, payments, shipments, stock, the step ledger",
  sagas: 'list sagas, or show one in full: steps, compensations, ledger, references',
  replay: "replay recorded or live histories against this build's workflow code",
  'build-bundle': 'prebuild the workflow bundle so workers start faster',
};

const USAGE = `usage: sagaflow <command> [flags]   (sagaflow <command> --help for its flags; sagaflow --version)

${Object.entries(COMMANDS)
  .map(([name, what]) => `  ${name.padEnd(13)}${what}`)
  .join('\n')}

Every setting is an environment variable (DATABASE_URL, TEMPORAL_ADDRESS, ...): see the README's Configuration.`;

const [command, ...rest] = process.argv.slice(2);
if (command === '--version' || command === '-v' || command === 'version') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json sits at the package root, above src/ and dist/
  const { PACKAGE_ROOT } = require('../src/paths') as typeof import('../src/paths');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pkg = require(`${PACKAGE_ROOT}/package.json`) as { name: string; version: string };
  process.stdout.write(`${pkg.name} ${pkg.version} (Node.js ${process.version})\n`);
  process.exit(0);
}
if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
  process.stdout.write(`${USAGE}\n`);
  process.exit(command === undefined ? 2 : 0);
}
if (!Object.hasOwn(COMMANDS, command)) {
  process.stderr.write(`sagaflow: unknown command "${command}"\n\n${USAGE}\n`);
  process.exit(2);
}
// The command module reads process.argv as if it had been started on its own, and words its usage
// for this executable (`sagaflow worker ...`, not `npm run worker -- ...`).
process.argv = [process.argv[0]!, require.resolve(`./${command}`), ...rest];
process.env.SAGAFLOW_INVOKED_AS = 'sagaflow';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the command is chosen at run time
require(`./${command}`);
