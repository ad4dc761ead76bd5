import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Starts a program that does not outlive this process, however this process ends.
 *
 * An `exit` handler covers a normal exit, an uncaught error and a handled signal, but
 * not a SIGKILL (the OOM killer, `kill -9`, a CI runner's timeout): the children are
 * then orphaned and go on running. Orphaned Temporal hosts keep their ports and keep
 * heartbeating into `cluster_membership`, where the next cluster on the same database
 * would count them as members.
 *
 * On Linux the kernel can tie a child to its parent: prctl(PR_SET_PDEATHSIG) makes it
 * receive a signal when the thread that started it ends. `setpriv --pdeathsig` (from
 * util-linux, on every Debian and most Linux systems) sets that and then execs the
 * program, so the pid, the arguments and the stdio are the program's own. Where
 * setpriv is absent (macOS), this is a plain spawn and the caller's exit handler is
 * all there is.
 *
 * Spawn from the main thread: the signal follows the thread that spawned, not the
 * process, so a child started from a worker_thread would die with that thread.
 */
export function spawnTied(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { deathSignal?: 'KILL' | 'TERM' } = {},
): ChildProcess {
  const { deathSignal = 'KILL', ...spawnOptions } = options;
  const setpriv = setprivPath();
  return setpriv
    ? spawn(setpriv, ['--pdeathsig', deathSignal, '--', command, ...args], spawnOptions)
    : spawn(command, args, spawnOptions);
}

let found: string | null | undefined;

/** setpriv on PATH (Linux only), looked up once. */
export function setprivPath(): string | undefined {
  if (found === undefined) {
    found = null;
    if (process.platform === 'linux') {
      for (const dir of (process.env.PATH ?? '').split(path.delimiter).concat('/usr/bin', '/bin')) {
        if (!path.isAbsolute(dir)) continue;
        const candidate = path.join(dir, 'setpriv');
        try {
          fs.accessSync(candidate, fs.constants.X_OK);
          found = candidate;
          break;
        } catch {
          // not here
        }
      }
    }
  }
  return found ?? undefined;
}
