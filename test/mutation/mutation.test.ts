/**
 * The bounded part of the mutation run (npm run mutate -- --scope ci), run by npm run test:mutation, alone after the other suites:
 * StrykerJS plants each defect it can in the ledger's external steps and their
 * compensations, and the activity and ledger suites must kill every one, on the real
 * PostgreSQL and Temporal server this suite brought up, or the mutant must be
 * named as equivalent, with its reason, in test/mutation/equivalent.json.
 * The whole run (--scope core) is a command of its own, hours long.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');

test('every mutant of the ledger\'s external steps is killed by the activity and ledger suites, or named as equivalent', async () => {
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/mutate.ts', '--scope', 'ci'], {
      cwd: ROOT,
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (b: Buffer) => (text += b.toString()));
    child.stderr.on('data', (b: Buffer) => (text += b.toString()));
    child.once('exit', (c) => resolve({ code: c, out: text }));
  });
  const summary = out.split('\n').filter((l) => /mutants:|mutation score:|surviving mutant|^ {2}\S/.test(l));
  expect({ code, summary }).toEqual({ code: 0, summary: expect.any(Array) });
  const report = JSON.parse(fs.readFileSync(path.join(ROOT, 'reports/mutation/ci.json'), 'utf8')) as {
    files: Record<string, { mutants: { status: string }[] }>;
  };
  const statuses = Object.values(report.files).flatMap((f) => f.mutants.map((m) => m.status));
  // The run really planted and tried mutants (a run that tested nothing would also exit 0).
  expect(statuses.filter((s) => s === 'Killed').length).toBeGreaterThan(20);
}, 30 * 60_000);
