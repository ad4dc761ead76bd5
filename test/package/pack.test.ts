/**
 * The toolkit as a team installs it: `npm pack` of packages/toolkit, the tarball
 * installed in scratch projects beside the Temporal SDK at the lowest and the
 * highest version the toolkit supports (its peer range), exactly as the guide
 * says. It ships compiled JavaScript and declarations only, adds little beyond
 * its peers, type-checks under node16, nodenext and bundler resolution, and runs
 * the replay gate there (capture, load, replay, a changed workflow caught)
 * against the real Temporal server of the test stack.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { holdDist } from '../helpers/dist-lock';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
const TOOLKIT = path.join(ROOT, 'packages/toolkit');
const SCRATCH_FILES = path.join(__dirname, 'scratch');
const toolkitPkg = JSON.parse(fs.readFileSync(path.join(TOOLKIT, 'package.json'), 'utf8')) as {
  name: string;
  dependencies?: Record<string, string>;
  peerDependencies: Record<string, string>;
};
/** The lowest and the highest @temporalio release the peer range admits, each installed and run. */
const TEMPORAL_VERSIONS = ['1.23.0', '1.24.0'];
const TEMPORAL_PEERS = Object.keys(toolkitPkg.peerDependencies).filter((p) => p.startsWith('@temporalio/'));

let scratch: string;
let tarball: string;
let files: string[];

const npm = (args: string[], cwd: string) => run('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline'], { cwd, maxBuffer: 64 << 20 });
const duBytes = async (dir: string) => Number((await run('du', ['-sb', dir])).stdout.split('\t')[0]);

beforeAll(async () => {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-toolkit-pack-'));
  // npm pack builds the toolkit's dist/ first (prepack): not while another test file builds it.
  const releaseDist = await holdDist();
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: TOOLKIT, maxBuffer: 16 << 20 }).finally(releaseDist);
  const [packed] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  tarball = path.join(scratch, packed!.filename);
  files = packed!.files.map((f) => f.path).sort();
}, 300_000);

afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

test('the tarball holds the toolkit alone: compiled JavaScript and declarations, its README and guide, no dependency of its own', () => {
  expect(files.filter((f) => !/^dist\/.*\.(js|d\.ts)$/.test(f))).toEqual(['GUIDE.md', 'LICENSE', 'README.md', 'package.json']);
  expect(files).toEqual(expect.arrayContaining(['dist/workflow/index.js', 'dist/ledger/index.d.ts', 'dist/edge/index.js', 'dist/replay/index.d.ts', 'dist/inbox/index.js', 'dist/outbox/index.js', 'dist/converter/payload-converter.js']));
  // Nothing of the order service.
  expect(files.filter((f) => /order|api\/|bin\/|activities|workers|migrations/.test(f))).toEqual([]);
  expect(toolkitPkg.dependencies ?? {}).toEqual({});
  expect(Object.keys(toolkitPkg.peerDependencies)).toEqual(expect.arrayContaining(['pg', '@temporalio/client', '@temporalio/worker', '@temporalio/workflow', '@temporalio/activity']));
});

describe.each(TEMPORAL_VERSIONS)('installed beside @temporalio %s', (version) => {
  let project: string;
  const log: string[] = [];

  beforeAll(async () => {
    project = path.join(scratch, `project-${version}`);
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: `scratch-${version.replace(/\./g, '-')}`, version: '1.0.0', private: true }));
    // The peers first, as a project using Temporal already has them; then the toolkit, as the guide says.
    await npm(['install', ...TEMPORAL_PEERS.map((p) => `${p}@${version}`), 'pg', '@types/pg', '@types/node@20'], project);
    const before = await duBytes(path.join(project, 'node_modules'));
    await npm(['install', tarball], project);
    const after = await duBytes(path.join(project, 'node_modules'));
    log.push(`@temporalio ${version}: the toolkit adds ${((after - before) / 1e6).toFixed(2)} MB`);
    for (const f of fs.readdirSync(SCRATCH_FILES)) fs.copyFileSync(path.join(SCRATCH_FILES, f), path.join(project, f));
  }, 600_000);

  afterAll(() => {
    process.stdout.write(`${log.join('\n')}\n`);
  });

  test('it adds less than 5 MB and no second copy of a peer', async () => {
    const added = Number(log[0]!.match(/adds ([\d.]+) MB/)![1]);
    expect(added).toBeLessThan(5);
    expect(fs.existsSync(path.join(project, 'node_modules/@sagaflow/toolkit/node_modules'))).toBe(false);
    const installed = JSON.parse(fs.readFileSync(path.join(project, 'node_modules/@temporalio/workflow/package.json'), 'utf8')) as { version: string };
    expect(installed.version).toBe(version);
  });

  test.each([
    ['node16', { module: 'node16', moduleResolution: 'node16' }],
    ['nodenext', { module: 'nodenext', moduleResolution: 'nodenext' }],
    ['bundler', { module: 'esnext', moduleResolution: 'bundler' }],
  ])('a project using every subpath type-checks under %s resolution', async (name, resolution) => {
    const config = path.join(project, `tsconfig.${name}.json`);
    fs.writeFileSync(
      config,
      // skipLibCheck as every project using the Temporal SDK sets it (its own declarations need it).
      JSON.stringify({ compilerOptions: { ...resolution, target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] }, files: ['use.ts'] }),
    );
    const tsc = path.join(ROOT, 'node_modules/typescript/bin/tsc');
    const typecheck = await run(process.execPath, [tsc, '-p', config], { cwd: project }).then(
      () => 'ok',
      (err: { stdout?: string }) => err.stdout ?? String(err),
    );
    expect(typecheck).toBe('ok');
  }, 120_000);

  test('the replay gate runs there: capture keeps every run, the same code replays, a changed workflow is caught', async () => {
    const dir = path.join(project, 'histories');
    const taskQueue = `pack-${version.replace(/\./g, '-')}-${Date.now()}`;
    const { stdout } = await run(process.execPath, ['gate.js', process.env.TEMPORAL_ADDRESS!, taskQueue, dir], { cwd: project, maxBuffer: 16 << 20, timeout: 240_000 });
    // The worker's runtime logs to stdout too: the gate's answer is its last line.
    const out = JSON.parse(stdout.trim().split('\n').pop()!) as {
      results: { status: string; compensations: number }[];
      refused: string;
      captured: { file: string; scenario: string; runId: string; status: string }[];
      same: { scenario: string; ok: boolean }[];
      changed: { scenario: string; ok: boolean; errorName?: string }[];
    };
    // A declined charge is undone too (the failed step's effect may have landed), then the seat.
    expect(out.results).toEqual([
      { status: 'completed', compensations: 0 },
      { status: 'compensated', compensations: 2 },
      { status: 'compensated', compensations: 2 },
    ]);
    // The strict payload converter, loaded from the installed package, refused a Map in a start.
    expect(out.refused).toBe('UnrepresentableValueError: payload.perks: a Map cannot be carried as JSON');
    // Three runs, two of one workflow ID: three files, each named by its run.
    expect(out.captured).toHaveLength(3);
    expect(out.captured.map((c) => c.scenario).sort()).toEqual(['a', 'a', 'b']);
    expect(new Set(out.captured.map((c) => c.runId)).size).toBe(3);
    for (const c of out.captured) expect(c.file).toBe(`v1-${c.scenario}.${c.runId}.json`);
    expect(fs.readdirSync(dir).sort()).toEqual([...out.captured.map((c) => c.file), 'manifest.json'].sort());
    expect(out.same.map((o) => o.ok)).toEqual([true, true, true]);
    expect(out.changed).toHaveLength(3);
    for (const o of out.changed) expect(o).toMatchObject({ ok: false, errorName: 'DeterminismViolationError' });
  }, 300_000);
});
