import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/**
 * CPU time from /proc (Linux): per process (utime + stime of all its threads, in clock ticks)
 * and the whole machine (the non-idle jiffies of /proc/stat). A benchmark round takes a sample
 * before and after, and charges the difference to process groups: a variant's workers, the
 * engine's server, PostgreSQL, the driver and services, the machine.
 */

export interface ProcInfo {
  pid: number;
  /** The executable's name as the kernel keeps it (`postgres`, `temporal`, `node`). */
  comm: string;
  ticks: number;
}

export interface CpuSample {
  procs: Map<number, ProcInfo>;
  /** Non-idle jiffies of all CPUs together (user, nice, system, irq, softirq, steal). */
  machineTicks: number;
}

let clockTicks: number | undefined;

/** Clock ticks per second (USER_HZ), 100 on nearly every Linux. */
export function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

function readStat(pid: number): ProcInfo | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // gone between the listing and the read
  }
  // comm is in parentheses and may itself hold spaces or parentheses: the last ')' ends it.
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  // After comm: state(0) ppid(1) ... utime(11) stime(12).
  return { pid, comm, ticks: Number(fields[11]) + Number(fields[12]) };
}

export function sampleCpu(): CpuSample {
  const procs = new Map<number, ProcInfo>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = readStat(Number(entry));
    if (info) procs.set(info.pid, info);
  }
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already counted in user).
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu;
  return { procs, machineTicks: user + nice + system + irq + softirq + steal };
}

/** Every process of the given executable name (e.g. all of PostgreSQL's backends). */
export function pidsNamed(sample: CpuSample, comm: string): number[] {
  return [...sample.procs.values()].filter((p) => p.comm === comm).map((p) => p.pid);
}

/**
 * The Temporal server listening on `address`: a process whose command line runs `temporal server
 * start-dev` (or a server binary) with that port; undefined if none is found on this machine.
 */
export function findTemporalServerPid(address: string): number | undefined {
  const port = address.slice(address.lastIndexOf(':') + 1);
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const exe = argv[0] ?? '';
    if (!/(^|\/)temporal(-server)?$/.test(exe) && !(argv.includes('start-dev') && /temporal/.test(exe))) continue;
    const portAt = argv.indexOf('--port');
    if ((portAt >= 0 && argv[portAt + 1] === port) || argv.some((a) => a === `--port=${port}`)) return Number(entry);
  }
  return undefined;
}

/** CPU ticks spent between two samples by the processes of a group (those alive in the later one). */
export function groupTicks(before: CpuSample, after: CpuSample, pids: Iterable<number>): number {
  let ticks = 0;
  for (const pid of pids) {
    const b = before.procs.get(pid);
    const a = after.procs.get(pid);
    if (a) ticks += a.ticks - (b?.ticks ?? 0);
  }
  return ticks;
}
