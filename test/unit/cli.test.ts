/**
 * Every command answers --help with its usage (exit 0), and a wrong flag with
 * what is wrong and the usage (exit 2), never a stack trace.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const COMMANDS = fs.readdirSync(path.join(ROOT, 'bin')).filter((f) => f.endsWith('.ts') && f !== 'run.ts');

function run(file: string, args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      ['-r', 'ts-node/register/transpile-only', path.join('bin', file), ...args],
      // The trip capture loads the toolkit from source, as its npm script does.
      { cwd: ROOT, env: { ...process.env, NODE_OPTIONS: '--conditions=sagaflow-source' }, timeout: 60_000 },
      // A process killed at the timeout has no exit code: say so, rather than pass for 0.
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number | null }).code ?? `killed by ${String((err as { signal?: string }).signal)}`) : 0, stdout, stderr }),
    ),
  );
}

test('every command in bin/ answers --help with a usage line and exits 0', async () => {
  expect(COMMANDS.length).toBeGreaterThanOrEqual(18);
  // Four at a time: two dozen ts-node start-ups at once, beside another test file, starve two cores.
  const results: { f: string; code: number | string; stdout: string }[] = [];
  const queue = [...COMMANDS];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let f = queue.shift(); f; f = queue.shift()) results.push({ f, ...(await run(f, ['--help'])) });
    }),
  );
  for (const r of results) {
    expect({ command: r.f, code: r.code, usage: /^usage:/.test(r.stdout) }).toEqual({ command: r.f, code: 0, usage: true });
  }
}, 240_000);

test.each([
  ['worker.ts', ['--bogus'], /^Unknown option '--bogus'\n\nusage: npm run worker/],
  ['worker.ts', ['--pollers', '1'], /^--pollers must be a whole number from 2 to 100\n\nusage: npm run worker/],
  ['audit.ts', ['--nope'], /^Unknown option '--nope'\n\nusage: npm run audit/],
  ['replay.ts', ['--limit'], /^Option '--limit <value>' argument missing\n\nusage: npm run replay/],
  ['tools-install.ts', ['--only', 'everything'], /^--only: test or cluster, not "everything"\n\nusage: npm run tools:install/],
  ['stack.ts', ['--temporal', 'k8s'], /^--temporal: dev or cluster, not "k8s"\n\nusage: npm run stack/],
  ['stack.ts', ['--postgres', 'patroni'], /^--postgres: embedded or ha, not "patroni"\n\nusage: npm run stack/],
  ['chaos.ts', ['--postgres', 'ha', '--temporal', 'cluster'], /^--postgres ha runs with the Temporal dev server, not --temporal cluster\n\nusage: npm run chaos/],
])('%s %j exits 2 with what is wrong and the usage', async (file, args, message) => {
  const r = await run(file, args);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/^\s+at /m);
}, 60_000);

test('through the sagaflow executable, a command words its usage for it, and --version names the package and Node.js', async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
  const [version, worker, intake, api] = await Promise.all([
    run('sagaflow.ts', ['--version']),
    run('sagaflow.ts', ['worker', '--help']),
    run('sagaflow.ts', ['intake', '--help']),
    run('sagaflow.ts', ['api', '--help']),
  ]);
  expect(version).toEqual({ code: 0, stdout: `${pkg.name} ${pkg.version} (Node.js ${process.version})\n`, stderr: '' });
  expect(worker.stdout.split('\n')[0]).toBe('usage: sagaflow worker [--queues workflows,orders,inventory,payments,shipping]');
  expect(intake.stdout.split('\n')[0]).toBe('usage: sagaflow intake [dead-letters | requeue SEQUENCE]');
  expect(api.stdout.split('\n')[0]).toBe('usage: sagaflow api');
  // Run on its own, the same command keeps the repository's wording.
  expect((await run('worker.ts', ['--help'])).stdout.split('\n')[0]).toBe('usage: npm run worker -- [--queues workflows,orders,inventory,payments,shipping]');
}, 120_000);
