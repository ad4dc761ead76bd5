import fs from 'node:fs';
import path from 'node:path';

/**
 * Where a process's CPU went, from the V8 CPU profile Node writes on exit (`--cpu-prof`): self time
 * by package (a node_modules package, a folder of the project, Node's internals, the garbage
 * collector) and by function. `npm run bench -- --profile DIR` profiles the sagaflow worker.
 */

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  /** Milliseconds sampled, idle excluded. */
  busyMs: number;
  /** Self time by where the code lives, largest first. */
  byPlace: { place: string; ms: number; share: number }[];
  /** Self time by function, largest first (the top ones). */
  byFunction: { fn: string; place: string; ms: number; share: number }[];
}

const REPO = path.resolve(__dirname, '../..');

/** Where a frame's code lives: `pg`, `@temporalio/worker`, `project: activities`, `node`, `(garbage collector)`. */
export function placeOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node';
  const file = url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = file.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  if (file.startsWith(REPO)) {
    const rel = path.relative(REPO, file).split(path.sep);
    return `project: ${rel[0] === 'packages' ? rel.slice(0, 2).join('/') : rel[0]}`;
  }
  return 'other';
}

/** A stretch of wall-clock time (ms since the epoch) to count, e.g. a round's loaded run. */
export interface Window {
  from: number;
  to: number;
}

/**
 * `startedAt`: when the process started (ms since the epoch); with `windows`, only the samples
 * taken within them count (the loaded runs, not start-up or idle waits).
 */
export function summarizeProfile(file: string, opts: { top?: number; startedAt?: number; windows?: Window[] } = {}): ProfileSummary {
  const top = opts.top ?? 25;
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const counted = (atMs: number) =>
    opts.windows === undefined || opts.startedAt === undefined || opts.windows.some((w) => atMs >= w.from - opts.startedAt! && atMs <= w.to - opts.startedAt!);
  // Each sample's time is the delta to the next one: charged to the node that was running.
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    at += (profile.timeDeltas[i] ?? 0) / 1000;
    if (!counted(at)) continue;
    const delta = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + delta);
  }
  const places = new Map<string, number>();
  const fns = new Map<string, { place: string; ms: number }>();
  let busy = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id)!;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === '(idle)') continue;
    busy += ms;
    const place = placeOf(url, functionName);
    places.set(place, (places.get(place) ?? 0) + ms);
    const key = `${functionName || '(anonymous)'} ${url ? `${path.basename(url)}:${lineNumber + 1}` : ''}`.trim();
    const f = fns.get(key) ?? { place, ms: 0 };
    f.ms += ms;
    fns.set(key, f);
  }
  const share = (ms: number) => (busy > 0 ? ms / busy : 0);
  return {
    file,
    busyMs: busy,
    byPlace: [...places].map(([place, ms]) => ({ place, ms, share: share(ms) })).sort((a, b) => b.ms - a.ms),
    byFunction: [...fns]
      .map(([fn, f]) => ({ fn, place: f.place, ms: f.ms, share: share(f.ms) }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top),
  };
}

export function formatProfile(s: ProfileSummary, sagas: number): string {
  const per = (ms: number) => (sagas > 0 ? (ms / sagas).toFixed(2) : '–');
  return [
    `CPU profile of the sagaflow worker: ${s.busyMs.toFixed(0)} ms busy over ${sagas} sagas (${per(s.busyMs)} ms per saga), ${path.basename(s.file)}`,
    '',
    '| where | ms per saga | share |',
    '|---|---|---|',
    ...s.byPlace.filter((p) => p.share >= 0.005).map((p) => `| ${p.place} | ${per(p.ms)} | ${(p.share * 100).toFixed(1)}% |`),
    '',
    '| function (self time) | where | ms per saga | share |',
    '|---|---|---|---|',
    ...s.byFunction.map((f) => `| ${f.fn.replaceAll('|', '\\|')} | ${f.place} | ${per(f.ms)} | ${(f.share * 100).toFixed(1)}% |`),
  ].join('\n');
}
