import fs from 'node:fs';
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
