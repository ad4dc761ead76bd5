/**
 * docs/runbook.md against what it documents: every alert links a section of it
 * that exists, every section of an alert is one alerts.yml has, every link inside
 * it lands on a heading, and every command it tells an operator to run exists
 * today: npm scripts (and their sub-commands), Temporal CLI commands and their
 * flags (asked of the real CLI), files of this repository.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { findBuiltTemporalCli } from '../../dev/temporal';

const ROOT = path.resolve(__dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');
const RUNBOOK = 'docs/runbook.md';

/** The anchor GitHub (and most Markdown renderers) give a heading. */
function headingAnchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

/** Headings outside code blocks, by anchor. */
function anchors(markdown: string): Map<string, string> {
  const out = new Map<string, string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6} (.+)$/.exec(line);
    if (m) out.set(headingAnchor(m[1]!), m[1]!);
  }
  return out;
}

/** Code an operator is told to run: lines of ```sh blocks, and inline code spans (which may wrap across lines). */
function commands(markdown: string): string[] {
  const out: string[] = [];
  const prose: string[] = [];
  let block: string | undefined;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) {
      block = block === undefined ? line.slice(3) : undefined;
      continue;
    }
    if (block === 'sh') out.push(line.replace(/\s+#.*$/, '').trim());
    else if (block === undefined) prose.push(line);
  }
  for (const m of prose.join(' ').matchAll(/`([^`]+)`/g)) out.push(m[1]!.replace(/\s+/g, ' '));
  return out.filter((c) => c !== '');
}

interface Rule {
  alert?: string;
  annotations?: Record<string, string>;
}
const rules = (): Rule[] =>
  (parse(read('deploy/prometheus/alerts.yml')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules).filter((r) => r.alert);

test('every alert has a runbook_url naming a section of docs/runbook.md', () => {
  const headings = anchors(read(RUNBOOK));
  const all = rules();
  expect(all.length).toBeGreaterThan(20);
  for (const r of all) {
    const url = r.annotations?.runbook_url ?? '';
    const m = /^docs\/runbook\.md#([\w-]+)$/.exec(url);
    expect({ alert: r.alert, url, section: m ? headings.get(m[1]!) : undefined }).toEqual({
      alert: r.alert,
      url: `docs/runbook.md#${headingAnchor(r.alert!)}`,
      section: r.alert,
    });
  }
});

test('every alert section of the runbook is an alert of alerts.yml (none left behind by a rename)', () => {
  const alerts = new Set(rules().map((r) => r.alert));
  const sections = [...anchors(read(RUNBOOK)).values()].filter((h) => /^Sagaflow[A-Z]\w+$/.test(h));
  expect(sections.filter((s) => !alerts.has(s))).toEqual([]);
  expect(sections.length).toBe(alerts.size);
});

test('the stuck states each have a section with something to look at and something to do', () => {
  const text = read(RUNBOOK);
  for (const state of ['A saga ended CompensationFailed', 'A saga stuck compensating', 'A saga stuck running', 'Orphan orders', 'Dead letters of the stream intake']) {
    const start = text.indexOf(`## ${state}\n`);
    expect({ state, found: start >= 0 }).toEqual({ state, found: true });
    const body = text.slice(start, text.indexOf('\n## ', start + 1));
    expect({ state, look: /^Look/m.test(body), act: /^Act/m.test(body), code: body.includes('```') }).toEqual({ state, look: true, act: true, code: true });
  }
});

test('every link inside the runbook lands on one of its headings, and operations.md links it', () => {
  const text = read(RUNBOOK);
  const headings = anchors(text);
  const links = [...text.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]!);
  expect(links.length).toBeGreaterThan(10);
  expect(links.filter((l) => !headings.has(l))).toEqual([]);
  expect(read('docs/operations.md')).toMatch(/\]\((\.\/)?runbook\.md\)/);
});

test('every npm script the runbook runs exists, with the sub-command it gives', () => {
  const { scripts } = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  const runs = commands(read(RUNBOOK)).flatMap((c) => [...c.matchAll(/npm run (\S+)(?: -- (\S+))?/g)]);
  expect(runs.length).toBeGreaterThan(5);
  for (const [, script, arg] of runs) {
    expect({ script, exists: script! in scripts }).toEqual({ script, exists: true });
    if (!arg || arg.startsWith('<')) continue;
    // The entry file's usage names each sub-command and flag it takes.
    const entry = /ts-node --transpile-only (\S+)/.exec(scripts[script!]!)?.[1];
    expect({ script, entry: entry !== undefined }).toEqual({ script, entry: true });
    expect({ script, arg, known: read(entry!).includes(arg) }).toEqual({ script, arg, known: true });
  }
});

test('every flag the runbook gives an npm script is one its entry file takes', () => {
  const { scripts } = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
  const uses = commands(read(RUNBOOK)).flatMap((c) => [...c.matchAll(/npm run (\S+) -- ((?:(?!npm run ).)*)/g)]);
  const flags = uses.flatMap(([, script, rest]) =>
    // Flags outside quoted values: `--note "…"` gives --note, never what the note says.
    [...rest!.replace(/"[^"]*"/g, '""').matchAll(/(?<=^|\s)--[a-z][a-z-]*/g)].map((m) => ({ script: script!, flag: m[0] })),
  );
  expect(flags.filter((f) => f.script === 'sagas').length).toBeGreaterThan(5);
  for (const { script, flag } of flags) {
    const entry = /ts-node --transpile-only (\S+)/.exec(scripts[script] ?? '')?.[1];
    expect({ script, flag, known: entry !== undefined && new RegExp(`${flag}\\b`).test(read(entry)) }).toEqual({ script, flag, known: true });
  }
});

test('every Temporal CLI command the runbook gives exists, with the flags it uses (asked of the real CLI)', () => {
  const cli = findBuiltTemporalCli(process.env.TEMPORAL_CLI_PATH || undefined);
  if (!cli) throw new Error('no Temporal CLI: the test setup builds one (npm run tools:install)');
  const uses = commands(read(RUNBOOK)).filter((c) => /^temporal [a-z]/.test(c));
  expect(uses.length).toBeGreaterThan(5);
  const help = new Map<string, string>();
  for (const use of uses) {
    // The command is the words up to the first flag or argument: `temporal workflow list --query …`.
    const sub: string[] = [];
    for (const w of use.split(/\s+/).slice(1)) {
      if (!/^[a-z][a-z-]*$/.test(w)) break;
      sub.push(w);
    }
    const key = sub.join(' ');
    if (!help.has(key)) help.set(key, execFileSync(cli.path, [...sub, '--help'], { encoding: 'utf8' }));
    const text = help.get(key)!;
    // `temporal <command> --help` of a command that does not exist prints its parent's help.
    expect({ use, command: text.includes(`temporal ${key} [flags]`) }).toEqual({ use, command: true });
    for (const flag of use.match(/(?<=\s)--[a-z-]+/g) ?? []) {
      expect({ use, flag, known: new RegExp(`${flag}\\b`).test(text) }).toEqual({ use, flag, known: true });
    }
  }
});

test('every repository file the runbook names exists', () => {
  const named = [...read(RUNBOOK).matchAll(/`((?:docs|deploy|activities|src|test|bin|dev)\/[\w./-]+\.\w+)`/g)].map((m) => m[1]!);
  expect(named.length).toBeGreaterThan(3);
  expect(named.filter((f) => !fs.existsSync(path.join(ROOT, f)))).toEqual([]);
});
