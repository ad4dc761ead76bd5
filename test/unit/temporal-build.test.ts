/**
 * The one-off Temporal CLI build reports progress instead of blocking in
 * silence, and explains a failure. `go` here is a script standing in for the
 * Go toolchain's output (the real build takes minutes; CI runs it through
 * `npm run tools:install`); what is under test is sagaflow's reporting, and that
 * it builds from the module that pins the versions.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TEMPORAL_TOOLS_MODULE } from '../../dev/go-build';
import { buildTemporalCli, cacheDir, TEMPORAL_CLI_VERSION } from '../../dev/temporal';
import { TEMPORAL_SERVER_VERSION } from '../../dev/temporal-cluster';
import { TEMPORAL_UI_VERSION } from '../../dev/temporal-ui';

let dir: string;
const saved = { PATH: process.env.PATH, SAGAFLOW_CACHE_DIR: process.env.SAGAFLOW_CACHE_DIR };

function fakeGo(script: string): void {
  fs.writeFileSync(path.join(dir, 'bin', 'go'), `#!/bin/sh\nif [ "$1" = env ]; then echo https://proxy.golang.org,direct; echo sum.golang.org; echo; exit 0; fi\n${script}\n`, { mode: 0o755 });
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-go-'));
  fs.mkdirSync(path.join(dir, 'bin'));
  process.env.PATH = `${path.join(dir, 'bin')}${path.delimiter}${saved.PATH}`;
  process.env.SAGAFLOW_CACHE_DIR = path.join(dir, 'cache');
});
afterEach(() => {
  process.env.PATH = saved.PATH;
  if (saved.SAGAFLOW_CACHE_DIR === undefined) delete process.env.SAGAFLOW_CACHE_DIR;
  else process.env.SAGAFLOW_CACHE_DIR = saved.SAGAFLOW_CACHE_DIR;
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a build prints what it builds, then progress lines with the time elapsed, then how long it took', async () => {
  fakeGo(`for m in a b c; do echo "go: downloading example.com/$m v1.0.0" >&2; done
sleep 0.4
echo go.temporal.io/server/common >&2; echo go.temporal.io/server/service/history >&2
sleep 0.4
echo "$PWD $*" > "$SAGAFLOW_CACHE_DIR.args"
printf '#!/bin/sh\\n' > "$4"; chmod +x "$4"`); // go build -v -o <output> <package>
  const lines: string[] = [];
  expect(await buildTemporalCli((m) => lines.push(m), 150)).toBe(true);

  expect(lines[0]).toMatch(/^building the Temporal CLI v1\.5\.1 \(github\.com\/temporalio\/cli\/cmd\/temporal\) with go build into .*; this takes a few minutes, once$/);
  expect(lines).toContainEqual(expect.stringMatching(/^building the Temporal CLI: 0m0\ds elapsed, 3 modules downloaded$/));
  expect(lines).toContainEqual(
    expect.stringMatching(/^building the Temporal CLI: 0m0\ds elapsed, 2 packages compiled \(now go\.temporal\.io\/server\/service\/history\)$/),
  );
  expect(lines.at(-1)).toMatch(/^built the Temporal CLI in 0m0\ds \(3 modules downloaded, 2 packages compiled\)$/);
  expect(fs.existsSync(path.join(cacheDir(), 'temporal'))).toBe(true);
  // Built in the module that pins it, into the cache.
  expect(fs.readFileSync(`${process.env.SAGAFLOW_CACHE_DIR}.args`, 'utf8').trim()).toBe(
    `${TEMPORAL_TOOLS_MODULE} build -v -o ${path.join(cacheDir(), 'temporal')} github.com/temporalio/cli/cmd/temporal`,
  );
});

test('tools/temporal pins the versions the code names: the CLI, the server inside it, its Web UI', () => {
  const goMod = fs.readFileSync(path.join(TEMPORAL_TOOLS_MODULE, 'go.mod'), 'utf8');
  const required = (module: string) => new RegExp(`^\\s*${module.replace(/[./]/g, '\\$&')} (\\S+)`, 'm').exec(goMod)?.[1];
  expect({
    cli: required('github.com/temporalio/cli'),
    server: required('go.temporal.io/server'),
    ui: required('github.com/temporalio/ui-server/v2'),
  }).toEqual({ cli: TEMPORAL_CLI_VERSION, server: TEMPORAL_SERVER_VERSION, ui: TEMPORAL_UI_VERSION });
  expect(fs.readFileSync(path.join(TEMPORAL_TOOLS_MODULE, 'tools.go'), 'utf8')).toContain('"github.com/temporalio/ui-server/v2/cmd/server"');
});

test("a failed build says so with Go's last lines and its proxy settings", async () => {
  fakeGo(`echo "go: downloading github.com/temporalio/cli v1.5.1" >&2
echo "go: github.com/temporalio/cli@v1.5.1: verifying module: checksum mismatch" >&2
exit 1`);
  const lines: string[] = [];
  expect(await buildTemporalCli((m) => lines.push(m), 10_000)).toBe(false);
  const failure = lines.at(-1)!;
  expect(failure).toMatch(/^go build failed \(exit 1\) after 0m00s; its last lines:\n/);
  expect(failure).toContain('verifying module: checksum mismatch');
  expect(failure).toContain('go env GOPROXY GOSUMDB GOFLAGS: https://proxy.golang.org,direct | sum.golang.org');
  expect(fs.existsSync(path.join(cacheDir(), 'temporal'))).toBe(false);
});
