import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PACKAGE_ROOT } from '../src/paths';

export const clock = (ms: number) => `${Math.floor(ms / 60_000)}m${String(Math.floor((ms % 60_000) / 1000)).padStart(2, '0')}s`;

export interface GoBuild {
  /** What is built, for the progress lines ("the Temporal CLI"). */
  what: string;
  /** The first line's text after "building ". */
  announce: string;
  /** `go` arguments; pass -v so each compiled package is printed. */
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** The executable the build must leave. */
  output: string;
  log: (m: string) => void;
  everyMs?: number;
}

/**
 * Runs a Go build that takes minutes on a new machine without going silent: Go
 * prints each module it downloads and (with -v) each package it compiles; this
 * turns that into a line of progress every `everyMs` (what is being built, the
 * time elapsed, modules and packages so far) and, on failure, Go's last lines
 * and the proxy settings that usually explain it.
 */
export async function goBuild(b: GoBuild): Promise<boolean> {
  const started = Date.now();
  b.log(`building ${b.announce}`);
  fs.mkdirSync(path.dirname(b.output), { recursive: true });
  const child = spawn('go', b.args, { cwd: b.cwd, env: { ...process.env, ...b.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let downloaded = 0;
  let compiled = 0;
  let last = '';
  const tail: string[] = [];
  let partial = '';
  const onOutput = (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      tail.push(line);
      if (tail.length > 40) tail.shift();
      if (line.startsWith('go: downloading')) downloaded += 1;
      else if (!line.startsWith('go:')) {
        compiled += 1;
        last = line.trim();
      }
    }
  };
  child.stdout!.on('data', onOutput);
  child.stderr!.on('data', onOutput);
  const ticker = setInterval(() => {
    const phase = compiled ? `${compiled} packages compiled (now ${last})` : `${downloaded} modules downloaded`;
    b.log(`building ${b.what}: ${clock(Date.now() - started)} elapsed, ${phase}`);
  }, b.everyMs ?? 15_000);
  const code = await new Promise<number | null>((resolve) => {
    child.once('error', () => resolve(null));
    child.once('close', (c) => resolve(c));
  });
  clearInterval(ticker);
  if (code === 0 && isExecutable(b.output)) {
    b.log(`built ${b.what} in ${clock(Date.now() - started)} (${downloaded} modules downloaded, ${compiled} packages compiled)`);
    return true;
  }
  const env = spawnSync('go', ['env', 'GOPROXY', 'GOSUMDB', 'GOFLAGS'], { encoding: 'utf8' }).stdout?.trim().split('\n') ?? [];
  b.log(
    `go ${b.args[0]} failed (exit ${code}) after ${clock(Date.now() - started)}; its last lines:\n${tail.join('\n')}\n` +
      `go env GOPROXY GOSUMDB GOFLAGS: ${env.join(' | ')}`,
  );
  return false;
}

export function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * The Go module (tools/temporal) that pins every Temporal program sagaflow builds: the
 * CLI, the server, temporal-sql-tool and the Web UI server. One module means one set of
 * dependency versions (the CLI's), so Go compiles what they share once: after the CLI
 * (minutes on a new machine), each of the others is seconds.
 */
export const TEMPORAL_TOOLS_MODULE = path.join(PACKAGE_ROOT, 'tools', 'temporal');

/** `go build -o output pkg` in tools/temporal, with goBuild's progress and failure report. */
export function buildTemporalProgram(b: { what: string; pkg: string; version: string; output: string; takes: string; log: (m: string) => void; everyMs?: number }) {
  return goBuild({
    what: b.what,
    announce: `${b.what} ${b.version} (${b.pkg}) with go build into ${path.dirname(b.output)}; ${b.takes}`,
    args: ['build', '-v', '-o', b.output, b.pkg],
    cwd: TEMPORAL_TOOLS_MODULE,
    output: b.output,
    log: b.log,
    everyMs: b.everyMs,
  });
}
