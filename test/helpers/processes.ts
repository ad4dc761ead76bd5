import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from '../../src/ports';

/** Alive and not a zombie (an orphan's zombie lingers until its new parent reaps it). Linux /proc. */
export function isRunning(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Running processes whose command line contains text (a state directory, a path). */
export function processesWith(text: string): number[] {
  return fs
    .readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => {
      try {
        return isRunning(pid) && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
      } catch {
        return false; // gone meanwhile
      }
    });
}

/** Resolves once none of pids is running; throws, naming the survivors, after timeoutMs. */
export async function untilGone(pids: () => number[], timeoutMs: number): Promise<void> {
  await waitFor('the processes to end', timeoutMs, async () => {
    const left = pids().filter(isRunning);
    if (left.length) throw new Error(`still running: ${left.join(', ')}`);
  });
}

/** SIGKILLs whichever of pids still run. */
export function killAll(pids: number[], signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Starts a command's entry file (bin/<name>.ts) as its own process, as `npm run <name>` does,
 * and resolves once its output says `ready`; rejects with that output if it exits first.
 */
export async function startEntry(
  entry: string,
  env: NodeJS.ProcessEnv,
  ready: string,
  cwd = path.resolve(__dirname, '../..'),
): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', entry], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  for (let i = 0; i < 1200 && !out.includes(ready); i++) {
    if (child.exitCode !== null) throw new Error(`${entry} exited ${child.exitCode}:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!out.includes(ready)) {
    child.kill('SIGKILL');
    throw new Error(`${entry} never said "${ready}":\n${out}`);
  }
  return { child, out: () => out };
}
