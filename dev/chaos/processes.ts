import { type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { spawnTied } from '../../src/tied-spawn';

export interface ProcessSpec {
  /** Short name, for the report and the log file. */
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** stdout and stderr of every incarnation are appended here. */
  logFile: string;
  /** A line on stdout or stderr that says the process is up. */
  readyLine?: RegExp;
  /** Every output line, e.g. to follow the pool's worker pids. */
  onLine?: (line: string) => void;
}

export interface ExitInfo {
  name: string;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** We sent the signal that ended it (a fault or the shutdown). */
  expected: boolean;
  /** It had printed its ready line. */
  wasReady: boolean;
  uptimeMs: number;
}

/** Every live child of this run, so an exiting driver can kill them synchronously. */
const live = new Set<ManagedProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) p.killGroupNow('SIGKILL');
  });
}

/**
 * One supervised child: its own process group (so a Ctrl-C in the terminal
 * reaches only the driver, which then stops everything in order), output to a
 * log file, a ready line, and an exit record saying whether we caused it.
 */
export class ManagedProcess {
  child: ChildProcess | undefined;
  startedAt = 0;
  ready = false;
  starts = 0;
  private expectExit = false;
  private exitedPromise: Promise<ExitInfo> | undefined;
  /** Called on every exit, expected or not. */
  onExit: ((info: ExitInfo) => void) | undefined;

  constructor(readonly spec: ProcessSpec) {
    installExitHook();
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns the process and resolves once its ready line appears (if it has one). */
  async start(readyTimeoutMs = 60_000): Promise<void> {
    if (this.running) throw new Error(`${this.spec.name} is already running`);
    const log = fs.createWriteStream(this.spec.logFile, { flags: 'a' });
    log.write(`\n===== ${new Date().toISOString()} chaos: starting ${this.spec.name} (start #${this.starts + 1}) =====\n`);
    // Tied to this process: a soak that is itself killed leaves no API or worker behind.
    const child = spawnTied(this.spec.command, this.spec.args, {
      cwd: this.spec.cwd,
      env: this.spec.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    this.starts += 1;
    this.startedAt = Date.now();
    this.ready = false;
    this.expectExit = false;
    live.add(this);
    const pid = child.pid ?? -1;

    let readyResolve: (() => void) | undefined;
    const readyPromise = new Promise<void>((resolve) => (readyResolve = resolve));
    let partial = '';
    // A pipe can still deliver data after the exit that ended the log: a child's own children
    // (a killed pool's workers) hold it open. Their last lines are dropped, never written after the end.
    log.on('error', () => undefined);
    const onData = (b: Buffer) => {
      if (!log.writableEnded) log.write(b);
      const text = partial + b.toString('utf8');
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      if (partial.length > 64 * 1024) partial = '';
      for (const line of lines) {
        if (!this.ready && this.spec.readyLine?.test(line)) {
          this.ready = true;
          readyResolve?.();
        }
        this.spec.onLine?.(line);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    this.exitedPromise = new Promise<ExitInfo>((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(this);
        const info: ExitInfo = {
          name: this.spec.name,
          pid,
          code,
          signal,
          expected: this.expectExit,
          wasReady: this.ready,
          uptimeMs: Date.now() - this.startedAt,
        };
        log.end(`\n===== ${new Date().toISOString()} chaos: ${this.spec.name} pid ${pid} exited code=${code} signal=${signal}${this.expectExit ? ' (sent by chaos)' : ''} =====\n`);
        this.onExit?.(info);
        resolve(info);
      });
    });
    if (!this.spec.readyLine) {
      this.ready = true;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        readyPromise,
        this.exitedPromise.then((info) => {
          throw new Error(`${this.spec.name} exited (code ${info.code}, signal ${info.signal}) before it was ready; see ${this.spec.logFile}`);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${this.spec.name} not ready after ${readyTimeoutMs} ms; see ${this.spec.logFile}`)), readyTimeoutMs);
        }),
      ]);
    } catch (err) {
      this.killGroupNow('SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Resolves when the current incarnation exits (at once if none runs). */
  async exited(): Promise<ExitInfo | undefined> {
    if (!this.running) return undefined;
    return this.exitedPromise;
  }

  /** Sends a signal to the process itself (not its group), as a fault. */
  signal(sig: NodeJS.Signals): boolean {
    if (!this.running || !this.child?.pid) return false;
    this.expectExit = true;
    try {
      process.kill(this.child.pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  /** Synchronous SIGKILL of the whole group: the last resort on exit. */
  killGroupNow(sig: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (!pid) return;
    this.expectExit = true;
    try {
      process.kill(-pid, sig);
    } catch {
      /* already gone */
    }
  }

  /** SIGTERM, then SIGKILL of the whole group after graceMs. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) {
      this.killGroupNow('SIGKILL'); // leftovers of a dead leader (e.g. a pool's workers)
      return;
    }
    const exited = this.exitedPromise!;
    this.signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    this.killGroupNow('SIGKILL');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
  }
}

/** True while a pid exists (signal 0 probes without killing). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
