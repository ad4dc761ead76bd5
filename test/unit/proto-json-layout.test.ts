/**
 * The replay gate's history files in a project laid out as npm lays out an
 * ordinary one: protobufjs 7 hoisted (from @grpc/proto-loader), and
 * @temporalio/common and @temporalio/proto each with a nested copy of
 * protobufjs 8. There the SDK's own historyFromJSON/historyToJSON throw `type
 * must be a Type` (two copies of protobufjs meet); the replay module's converter
 * (packages/toolkit/src/replay/proto-json.ts) reads and writes the same histories.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import ts from 'typescript';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
const MODULES = path.join(ROOT, 'node_modules');
let project: string;

beforeAll(() => {
  project = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-proto-layout-'));
  const nm = path.join(project, 'node_modules');
  fs.mkdirSync(path.join(nm, '@temporalio'), { recursive: true });
  for (const entry of fs.readdirSync(MODULES)) {
    if (entry === '@temporalio' || entry === 'protobufjs' || entry.startsWith('.')) continue;
    fs.symlinkSync(path.join(MODULES, entry), path.join(nm, entry));
  }
  for (const entry of fs.readdirSync(path.join(MODULES, '@temporalio'))) {
    const from = path.join(MODULES, '@temporalio', entry);
    const to = path.join(nm, '@temporalio', entry);
    if (entry === 'proto' || entry === 'common') {
      // Each its own copy of protobufjs 8, as npm nests it when 7 is hoisted.
      fs.cpSync(from, to, { recursive: true, dereference: true });
      fs.cpSync(path.join(MODULES, 'protobufjs'), path.join(to, 'node_modules/protobufjs'), { recursive: true, dereference: true });
    } else {
      fs.symlinkSync(from, to);
    }
  }
  fs.symlinkSync(path.join(MODULES, '@grpc/proto-loader/node_modules/protobufjs'), path.join(nm, 'protobufjs'));
  const source = fs.readFileSync(path.join(ROOT, 'packages/toolkit/src/replay/proto-json.ts'), 'utf8');
  const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true } }).outputText;
  fs.writeFileSync(path.join(project, 'proto-json.js'), js);
  fs.copyFileSync(path.join(ROOT, 'test/replay/histories/v9-success.json'), path.join(project, 'history.json'));
}, 60_000);

afterAll(() => {
  fs.rmSync(project, { recursive: true, force: true });
});

const probe = `
  const fs = require('node:fs');
  const json = JSON.parse(fs.readFileSync('history.json', 'utf8'));
  const attempt = (f) => { try { return f(); } catch (err) { return 'throws: ' + err.message; } };
  const sdk = require('@temporalio/common/lib/proto-utils');
  const ours = require('./proto-json.js');
  const hoisted = require('protobufjs/package.json').version;
  const history = attempt(() => ours.historyFromJson(json));
  const again = typeof history === 'string' ? history : attempt(() => ours.historyFromJson(JSON.parse(ours.historyToJson(history))));
  console.log(JSON.stringify({
    hoisted,
    sdkRead: attempt(() => sdk.historyFromJSON(json).events.length),
    oursRead: typeof history === 'string' ? history : history.events.length,
    firstEventId: typeof history === 'string' ? null : String(history.events[0].eventId),
    roundTrip: typeof again === 'string' ? again : again.events.length,
  }));`;

test("in npm's usual layout the SDK's converter throws, and the replay module's reads and writes the history", async () => {
  const { stdout } = await run(process.execPath, ['-e', probe], { cwd: project });
  const events = (JSON.parse(fs.readFileSync(path.join(project, 'history.json'), 'utf8')) as { events: unknown[] }).events.length;
  expect(JSON.parse(stdout)).toEqual({
    hoisted: expect.stringMatching(/^7\./),
    sdkRead: 'throws: type must be a Type',
    oursRead: events,
    firstEventId: '1',
    roundTrip: events,
  });
});
