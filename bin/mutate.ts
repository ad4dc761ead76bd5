import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startTestStack } from '../dev/test-stack';
import { runMain } from '../src/run-main';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { scopes, CORE } = require('../test/mutation/scopes') as {
  scopes: Record<string, { about: string; mutate: string[]; alsoDetectedBy?: string[] }>;
  CORE: string[];
};

const scopeLines = Object.entries(scopes)
  .map(([name, s]) => `--scope ${name.padEnd(11)} ${s.about}`)
  .join('\n');

const USAGE = `usage: npm run mutate [-- --scope core|${Object.keys(scopes).join('|')}] [--mutate FILE[:LINES]]

Mutation testing of the core with StrykerJS and its Jest runner: one small defect
at a time is planted in the ledger, the Idempotency-Key records, the API's use
case and auth, the activities and the saga helper, and the tests that cover it
run on the real PostgreSQL and Temporal server (DATABASE_URL and
TEMPORAL_ADDRESS, or an embedded PostgreSQL and the dev server, started once for
the whole run). test/mutation/scopes.js says what each scope mutates and tests.

--scope core        every scope below but ci, one after the other (the default; hours on two cores)
${scopeLines}
--mutate F[:L-M]    only this file (or lines L to M of it, both given) of the scope: to retry a survivor;
                    the scope's report keeps the mutants of its last run outside that part
--summarize         read the scopes' last reports again, without running anything (scopes whose
                    detections count for each other: saga and saga-replay)

Prints each scope's mutation score and every surviving mutant not listed, with
its reason, in test/mutation/equivalent.json, and every file that changed since
its scope's report; exit 1 if there is one.
Reports: reports/mutation/<scope>.json, committed with the code they measured
(all but ci's): a run of one part keeps the rest of its scope's last run, and
--summarize gives the figures from a clean clone.`;

const ROOT = path.resolve(__dirname, '..');

interface Mutant {
  mutatorName: string;
  statusReason?: string;
  replacement?: string;
  status: string;
  location: { start: { line: number; column: number }; end: { line: number; column: number } };
}
interface Report {
  files: Record<string, { source: string; mutants: Mutant[] }>;
  schemaVersion?: string;
  thresholds?: unknown;
  testFiles?: Record<string, { tests: unknown[]; source?: string }>;
}

const mapValues = <A, B>(o: Record<string, A>, f: (a: A) => B): Record<string, B> =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));
/** A surviving mutant that no test can kill, and why. Matched by file, mutator, replacement and its line's text. */
interface Equivalent {
  file: string;
  mutator: string;
  replacement: string;
  line: string;
  reason: string;
}

const reportPath = (scope: string) => path.join(ROOT, 'reports', 'mutation', `${scope}.json`);
const mutantId = (file: string, m: Mutant) =>
  `${file}:${m.location.start.line}:${m.location.start.column} ${m.mutatorName} ${m.replacement ?? ''}`;
const isDetected = (m: Mutant) => m.status === 'Killed' || m.status === 'Timeout';

runMain(USAGE, async () => {
  const { values } = parseArgs({
    options: { scope: { type: 'string', default: 'core' }, mutate: { type: 'string' }, summarize: { type: 'boolean' } },
  });
  const scope = values.scope!;
  if (scope !== 'core' && !(scope in scopes)) {
    console.error(`--scope: core or ${Object.keys(scopes).join(', ')}, not "${scope}"\n\n${USAGE}`);
    return 2;
  }
  const run = scope === 'core' ? CORE : [scope];
  if (values.summarize) {
    let failed = 0;
    for (const name of run) {
      if (fs.existsSync(reportPath(name))) failed += summarize(name);
      else {
        console.log(`${name}: no report yet: npm run mutate -- --scope ${name}`);
        failed += 1;
      }
    }
    return failed ? 1 : 0;
  }
  const log = (m: string) => process.stderr.write(`[mutate] ${m}\n`);
  const part = values.mutate ? parsePart(values.mutate) : undefined;
  const stack = await startTestStack({ log });
  try {
    let failed = 0;
    for (const name of run) {
      log(`scope ${name}: PostgreSQL ${stack.databaseUrl}, Temporal ${stack.temporalAddress}`);
      const previous = part && fs.existsSync(reportPath(name)) ? readReport(reportPath(name)) : undefined;
      const code = await new Promise<number | null>((resolve) => {
        const stryker = path.join(ROOT, 'node_modules', '@stryker-mutator', 'core', 'bin', 'stryker.js');
        const child = spawn(process.execPath, [stryker, 'run', 'stryker.config.mjs', ...(values.mutate ? ['--mutate', values.mutate] : [])], {
          cwd: ROOT,
          stdio: 'inherit',
          env: { ...process.env, DATABASE_URL: stack.databaseUrl, TEMPORAL_ADDRESS: stack.temporalAddress, NATS_URL: stack.natsUrl, SAGAFLOW_MUTATION_SCOPE: name },
        });
        child.once('exit', (c) => resolve(c));
      });
      if (code !== 0) {
        console.error(`scope ${name}: stryker exited ${code}`);
        failed += 1;
        continue;
      }
      let report = readReport(reportPath(name));
      if (part && previous) {
        const kept = keepOutside(previous, report, part);
        report = kept.report;
        log(`scope ${name}: the report keeps ${kept.count} mutant(s) of its last run outside ${values.mutate}`);
      }
      writeReport(reportPath(name), report);
      failed += summarize(name);
    }
    return failed ? 1 : 0;
  } finally {
    await stack.stop();
  }
});

/** A part of a scope given by --mutate: a file, or lines of it. */
interface Part {
  file: string;
  lines?: { from: number; to: number };
}

function parsePart(spec: string): Part {
  const m = /^(.*?):(\d+)-(\d+)$/.exec(spec);
  return m ? { file: m[1]!, lines: { from: Number(m[2]), to: Number(m[3]) } } : { file: spec };
}

function readReport(file: string): Report {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Report;
}

/**
 * Keeps what the figures are made of (the mutants, the sources they were planted in, the tests),
 * not where and with what the run happened (Stryker's config, the project root, stack traces): the
 * reports are committed, one line per mutant so that a re-run's diff shows what changed.
 */
function writeReport(file: string, { files, schemaVersion, thresholds, testFiles }: Report): void {
  const entry = (key: string, value: unknown, indent: string) => `${indent}${JSON.stringify(key)}: ${value}`;
  const fileEntries = Object.entries(files).map(([name, { source, mutants, ...rest }]) => {
    // A killed mutant's reason is a stack trace through this run's sandbox: where, not what.
    const kept = mutants.map(({ statusReason: _, ...m }) => `      ${JSON.stringify(m)}`);
    const fields = [
      entry('mutants', `[\n${kept.join(',\n')}\n    ]`, '    '),
      entry('source', JSON.stringify(source), '    '),
      ...Object.entries(rest).map(([k, v]) => entry(k, JSON.stringify(v), '    ')),
    ];
    return entry(name, `{\n${fields.join(',\n')}\n  }`, '  ');
  });
  const top = [
    entry('files', `{\n${fileEntries.join(',\n')}\n}`, ''),
    // The tests by name; their source is in git, as of the commit that brought the report.
    ...Object.entries({ schemaVersion, thresholds, testFiles: testFiles && mapValues(testFiles, ({ tests }) => ({ tests })) })
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => entry(k, JSON.stringify(v), '')),
  ];
  fs.writeFileSync(file, `{\n${top.join(',\n')}\n}\n`);
}

/**
 * The fresh report of a part, with the last run's mutants outside that part kept, so a retried
 * survivor updates the scope's figures instead of replacing them. In a file whose source changed
 * since the last run, a mutant is kept only where every line it spans is unchanged (moved to where
 * those lines are now): the part run must cover every line the change touched, or its mutants are
 * missing from the report and --summarize counts fewer.
 */
function keepOutside(previous: Report, fresh: Report, part: Part): { report: Report; count: number } {
  const files = { ...previous.files };
  let count = 0;
  for (const [file, entry] of Object.entries(fresh.files)) {
    const old = files[file];
    const outside =
      old && part.lines && file === part.file
        ? movedMutants(old, entry.source).filter((m) => m.location.start.line < part.lines!.from || m.location.start.line > part.lines!.to)
        : [];
    files[file] = { ...entry, mutants: [...outside, ...entry.mutants] };
  }
  for (const [file, entry] of Object.entries(files)) count += entry.mutants.length - (fresh.files[file]?.mutants.length ?? 0);
  return { report: { ...fresh, files }, count };
}

/** The mutants of `old` whose lines are all unchanged in `source`, at their new line numbers. */
function movedMutants(old: Report['files'][string], source: string): Mutant[] {
  const moved = unchangedLines(old.source, source);
  return old.mutants.flatMap((m) => {
    const { start, end } = m.location;
    const delta = (moved.get(start.line) ?? NaN) - start.line;
    for (let line = start.line; line <= end.line; line++) if (moved.get(line) !== line + delta) return [];
    return [{ ...m, location: { start: { ...start, line: start.line + delta }, end: { ...end, line: end.line + delta } } }];
  });
}

/** Old line number → new line number (1-based) for every line a longest common subsequence of the two keeps. */
function unchangedLines(before: string, after: string): Map<number, number> {
  const a = before.split('\n');
  const b = after.split('\n');
  // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
  const lcs = Array.from({ length: a.length + 1 }, () => new Uint32Array(b.length + 1));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const map = new Map<number, number>();
  for (let i = 0, j = 0; i < a.length && j < b.length; ) {
    if (a[i] === b[j]) map.set(++i, ++j);
    else if (lcs[i + 1]![j]! >= lcs[i]![j + 1]!) i++;
    else j++;
  }
  return map;
}

/**
 * The mutants other scopes' reports show detected: scopes that plant the same defects and run other
 * tests (the saga helper's patches, against recorded histories). A report that is missing counts nothing.
 */
function detectedElsewhere(scope: string): { ids: Set<string>; from: string[] } {
  const ids = new Set<string>();
  const from: string[] = [];
  for (const other of scopes[scope]?.alsoDetectedBy ?? []) {
    if (!fs.existsSync(reportPath(other))) {
      console.log(`${scope}: no report of scope ${other} yet (npm run mutate -- --scope ${other}): its detections are not counted`);
      continue;
    }
    from.push(other);
    const report = readReport(reportPath(other));
    for (const [file, { mutants }] of Object.entries(report.files)) for (const m of mutants) if (isDetected(m)) ids.add(mutantId(file, m));
  }
  return { ids, from };
}

/** Prints the score and the survivors no reason accounts for; 1 if there is one. */
function summarize(scope: string): number {
  const report = readReport(reportPath(scope));
  const elsewhere = detectedElsewhere(scope);
  let detectedByOthers = 0;
  const equivalents = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'mutation', 'equivalent.json'), 'utf8')) as Equivalent[];
  const counts: Record<string, number> = {};
  const unexplained: string[] = [];
  let equivalent = 0;
  const stale: string[] = [];
  for (const [file, { source, mutants }] of Object.entries(report.files)) {
    const now = fs.existsSync(path.join(ROOT, file)) ? fs.readFileSync(path.join(ROOT, file), 'utf8') : undefined;
    if (now !== source) stale.push(file);
    const lines = source.split('\n');
    for (const m of mutants) {
      counts[m.status] = (counts[m.status] ?? 0) + 1;
      if (m.status !== 'Survived' && m.status !== 'NoCoverage') continue;
      if (elsewhere.ids.has(mutantId(file, m))) {
        detectedByOthers += 1;
        continue;
      }
      const line = (lines[m.location.start.line - 1] ?? '').trim();
      const known = equivalents.find(
        (e) => e.file === file && e.mutator === m.mutatorName && e.replacement === (m.replacement ?? '') && e.line === line,
      );
      if (known) equivalent += 1;
      else unexplained.push(`${file}:${m.location.start.line}  ${m.mutatorName} → ${JSON.stringify(m.replacement ?? '')}  (${m.status})\n    ${line}`);
    }
  }
  const detected = (counts.Killed ?? 0) + (counts.Timeout ?? 0) + detectedByOthers;
  const undetected = (counts.Survived ?? 0) + (counts.NoCoverage ?? 0) - detectedByOthers;
  const total = detected + undetected;
  const pct = (n: number, d: number) => (d ? ((100 * n) / d).toFixed(1) : '100.0');
  console.log(`${scope}: mutants: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (elsewhere.from.length) console.log(`${scope}: ${detectedByOthers} of its survivors detected by scope ${elsewhere.from.join(', ')}`);
  console.log(`${scope}: mutation score: ${pct(detected, total)}% (${detected} of ${total} detected); ` +
    `${pct(detected, total - equivalent)}% of the ${total - equivalent} that are not equivalent (${equivalent} named in test/mutation/equivalent.json)`);
  if (unexplained.length) {
    console.log(`${scope}: ${unexplained.length} surviving mutant(s) neither killed nor named as equivalent:`);
    for (const u of unexplained) console.log(`  ${u}`);
  }
  // A report measured another version of a file: its figures no longer say anything of the code.
  for (const file of stale) {
    console.log(`${scope}: ${file} changed since this report: npm run mutate -- --scope ${scope} --mutate ${file}`);
  }
  return unexplained.length || stale.length ? 1 : 0;
}
