/**
 * The published package: `npm pack` builds it, a scratch project installs the
 * tarball from scratch, and its five subpath exports type-check and load there
 * as any user's would, and its `sagaflow` executable runs. No TypeScript source is shipped.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { holdDist } from '../helpers/dist-lock';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
let scratch: string;

beforeAll(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-pack-'));
}, 30_000);

afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

test('npm pack ships compiled JavaScript and declarations whose subpath exports type-check and load in a scratch project', async () => {
  // npm pack builds dist/ first (prepack): not while another test file builds or runs it.
  const releaseDist = await holdDist();
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: ROOT, maxBuffer: 16 << 20 }).finally(releaseDist);
  const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  const files = packed!.files.map((f) => f.path);
  expect(files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))).toEqual([]);
  expect(files).toEqual(expect.arrayContaining(['dist/workflows/saga/index.js', 'dist/src/ledger/index.d.ts', 'dist/src/edge/index.js', 'dist/src/replay/index.d.ts', 'dist/src/inbox/index.js', 'dist/src/outbox/index.js']));

  fs.writeFileSync(path.join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true }));
  await run('npm', ['install', path.join(scratch, packed!.filename), '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], {
    cwd: scratch,
    maxBuffer: 16 << 20,
  });

  // A user's code against every subpath, type-checked as a node16 project.
  fs.writeFileSync(
    path.join(scratch, 'use.ts'),
    `import { Saga, sagaKeys, SagaFailure, type SagaStatus } from 'sagaflow/workflow';
import { createLedger, LedgerFailure, migrateLedger, type ForwardOutcome } from 'sagaflow/ledger';
import { claimKey, completeKey, IDEMPOTENCY_KEY_PATTERN, type Claim } from 'sagaflow/edge';
import { loadHistories, replayHistories, type ReplayOutcome } from 'sagaflow/replay';
import { InvalidMessage, processMessage, runJetStreamInbox, type InboxHandler } from 'sagaflow/inbox';
import { outboxTableDdl, runOutboxRelay, type OutboxTable } from 'sagaflow/outbox';
const trips: OutboxTable = { table: 'trip_events', subjectColumn: 'trip_id', source: 'trips', typeName: (t) => \`io.example.trip.\${t}.v1\` };
const handler: InboxHandler<{ n: number }> = {
  source: 'greetings',
  parse: () => { throw new InvalidMessage('never'); },
  newResourceId: (p) => String(p.n),
  apply: async (tx) => { await tx.query('SELECT 1'); },
};
const key: string = sagaKeys('trip-1').undo('hold-flight');
const phase: SagaStatus['phase'] = 'running';
const forward: ForwardOutcome<{ id: string }> = { state: 'completed', result: { id: 'x' } };
const claim: Claim | undefined = undefined;
const outcomes: ReplayOutcome[] = [];
export const used = [Saga, key, phase, SagaFailure.CompensationFailed, createLedger, LedgerFailure.StepCancelled, migrateLedger,
  forward, claimKey, completeKey, IDEMPOTENCY_KEY_PATTERN.test('k'), claim, loadHistories, replayHistories, outcomes, handler, processMessage, runJetStreamInbox, outboxTableDdl('trip_events', 'trip_id'), runOutboxRelay, trips];
// The declarations are real types, not any: these must be errors.
// @ts-expect-error a step name is a string
sagaKeys('trip-1').step(42);
// @ts-expect-error a forward outcome has no state 'maybe'
export const bad: ForwardOutcome = { state: 'maybe' };
// @ts-expect-error a dead letter's reason is one of four
export const reason: import('sagaflow/inbox').DeadLetterReason = 'whatever';
// @ts-expect-error an outbox table names its CloudEvents type
export const untyped: OutboxTable = { table: 't', subjectColumn: 's', source: 'x' };
`,
  );
  fs.writeFileSync(
    path.join(scratch, 'tsconfig.json'),
    // skipLibCheck as every project using the Temporal SDK sets it (its own declarations need it).
    JSON.stringify({ compilerOptions: { module: 'node16', moduleResolution: 'node16', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true }, files: ['use.ts'] }),
  );
  const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
  const typecheck = await run(process.execPath, [tsc, '-p', scratch], { cwd: scratch }).then(
    () => 'ok',
    (err: { stdout?: string }) => err.stdout ?? String(err),
  );
  expect(typecheck).toBe('ok');

  // And they load, from the compiled JavaScript, with what each promises.
  const probe = `
    const w = require('sagaflow/workflow'), l = require('sagaflow/ledger'), e = require('sagaflow/edge'), r = require('sagaflow/replay'), i = require('sagaflow/inbox'), o = require('sagaflow/outbox');
    console.log(JSON.stringify({
      key: w.sagaKeys('trip-1').step('hold-car'),
      parsed: w.parseStepKey('trip-1/hold-car/undo'),
      functions: [w.Saga, l.createLedger, l.migrateLedger, e.claimKey, e.migrateEdge, r.replayHistories, r.captureHistories, i.processMessage, i.runJetStreamInbox, i.migrateInbox, o.runOutboxRelay, o.relayOutboxOnce, o.outboxTableDdl].map((f) => typeof f),
      from: require.resolve('sagaflow/ledger'),
    }));`;
  const loaded = await run(process.execPath, ['-e', probe], { cwd: scratch });
  const out = JSON.parse(loaded.stdout) as { key: string; parsed: unknown; functions: string[]; from: string };
  expect(out.key).toBe('trip-1/hold-car');
  expect(out.parsed).toEqual({ key: 'trip-1/hold-car/undo', workflowId: 'trip-1', step: 'hold-car', undo: true, forwardKey: 'trip-1/hold-car' });
  expect(out.functions).toEqual(Array(13).fill('function'));
  expect(out.from).toBe(path.join(fs.realpathSync(scratch), 'node_modules/sagaflow/dist/src/ledger/index.js'));

  // The package's executable: `npx sagaflow <command>` runs the compiled commands, migrations shipped with them.
  expect(files).toEqual(expect.arrayContaining(['dist/bin/sagaflow.js', 'dist/bin/worker.js', 'dist/src/db/migrations/001_sagaflow_schema.sql']));
  expect(files.filter((f) => f.startsWith('dist/dev/') || f === 'dist/bin/services.js')).toEqual([]);
  const help = await run('npx', ['--no-install', 'sagaflow', '--help'], { cwd: scratch });
  expect(help.stdout).toMatch(/^usage: sagaflow <command>/);
  const workerHelp = await run('npx', ['--no-install', 'sagaflow', 'worker', '--help'], { cwd: scratch });
  expect(workerHelp.stdout).toMatch(/^usage: npm run worker/);
  const intakeHelp = await run('npx', ['--no-install', 'sagaflow', 'intake', '--help'], { cwd: scratch });
  expect(intakeHelp.stdout).toMatch(/^usage: npm run intake/);
  const relayHelp = await run('npx', ['--no-install', 'sagaflow', 'relay', '--help'], { cwd: scratch });
  expect(relayHelp.stdout).toMatch(/^usage: npm run relay/);
  const unknown = await run('npx', ['--no-install', 'sagaflow', 'stack'], { cwd: scratch }).then(
    () => 'exit 0',
    (err: { code?: number; stderr?: string }) => `exit ${err.code}: ${err.stderr?.split('\n').find((l) => !l.startsWith('npm warn'))}`,
  );
  expect(unknown).toBe('exit 2: sagaflow: unknown command "stack"');
}, 300_000);
