import fs from 'node:fs';
import path from 'node:path';
import { historyFromJson, historyToJson } from './proto-json';
import type { temporal } from '@temporalio/proto';
import type { ReplayCase } from './replay';

type History = temporal.api.history.v1.IHistory;

export interface ManifestEntry {
  file: string;
  scenario: string;
  workflowType: string;
  workflowId: string;
  /**
   * The run the history is of. Absent in entries written before captures kept every run
   * (one `<label>-<scenario>.json` per workflow ID): loading reads it from the history then.
   */
  runId?: string;
  /** package version + commit the history was recorded with. */
  codeVersion: string;
  capturedAt: string;
  /** The run's status as its captured history shows it: COMPLETED, FAILED, RUNNING... */
  status: string;
  /** Activity types in the order the history scheduled them. */
  activities: string[];
  /**
   * The IDs of the keys the history's payloads were sealed with (absent: none, it is plaintext).
   * Replaying it needs every one of them in the replay's payload codec.
   */
  payloadKeyIds?: string[];
}

export interface Manifest {
  histories: ManifestEntry[];
}

/** At most this many characters of the scenario in a file name: names stay short whatever the workflow IDs are. */
const SCENARIO_CHARS = 80;
const unsafe = /[^A-Za-z0-9_-]+/g;

/**
 * The file a captured run is written to: `<label>-<scenario>.<runId>.json`, in letters, digits,
 * `_` and `-` (anything else becomes `_`, the scenario is cut at 80 characters). A function of the
 * three alone, so the same run captured again lands on its own file, and two runs of one workflow
 * ID on two files. Histories captured before the run was part of the name are `<label>-<scenario>.json`.
 */
export function historyFileName(label: string, scenario: string, runId: string): string {
  const part = (s: string) => s.replace(unsafe, '_');
  if (!runId) throw new Error('a captured history needs its run ID');
  return `${part(label)}-${part(scenario).slice(0, SCENARIO_CHARS)}.${part(runId)}.json`;
}

/**
 * The run ID a history was started with (its first event's `originalExecutionRunId`): the run's
 * own ID, unless the run was reset, which gives the new run another and keeps this one.
 */
export function startedRunId(history: History): string | undefined {
  return history.events?.[0]?.workflowExecutionStartedEventAttributes?.originalExecutionRunId || undefined;
}

export function readManifest(dir: string): Manifest {
  const file = path.join(dir, 'manifest.json');
  if (!fs.existsSync(file)) return { histories: [] };
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
}

export function writeManifest(manifest: Manifest, dir: string): void {
  manifest.histories.sort((a, b) => a.file.localeCompare(b.file));
  fs.writeFileSync(path.join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

export function writeHistory(dir: string, file: string, history: History): void {
  fs.mkdirSync(dir, { recursive: true });
  // Pretty-printed so a diff of a re-capture can be read, and keys sorted: the server sends the
  // entries of a map (a payload's metadata, search attributes, marker details) in any order, so
  // the same history fetched twice is written byte for byte the same.
  const json = JSON.parse(historyToJson(history as temporal.api.history.v1.History)) as unknown;
  fs.writeFileSync(path.join(dir, file), `${JSON.stringify(sortedKeys(json), null, 1)}\n`);
}

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (!value || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, sortedKeys((value as Record<string, unknown>)[k])]),
  );
}

/** A history file of the folder, as writeHistory wrote it. */
export function readHistory(dir: string, file: string): History {
  return historyFromJson(JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')));
}

/**
 * Every history the folder's manifest lists, ready for replayAll: files named with their run and
 * without (captured before runs were kept apart), each case with the run ID its entry records or,
 * for an entry without one, the one its history was started with.
 */
export function loadCases(dir: string): (ReplayCase & { entry: ManifestEntry })[] {
  return readManifest(dir).histories.map((entry) => {
    const history = readHistory(dir, entry.file);
    return { entry, workflowId: entry.workflowId, runId: entry.runId ?? startedRunId(history), scenario: entry.scenario, history };
  });
}

/**
 * The key IDs a history's payloads were sealed with, sorted: the `encryption-key-id`
 * metadata of Temporal's encryption samples, which sagaflow's codec writes too.
 */
export function sealingKeyIds(history: History): string[] {
  const ids = new Set<string>();
  const visit = (node: unknown): void => {
    if (!node || typeof node !== 'object' || ArrayBuffer.isView(node)) return;
    if (Array.isArray(node)) {
      node.forEach(visit);
      return;
    }
    const id = ((node as { metadata?: unknown }).metadata as Record<string, unknown> | null | undefined)?.['encryption-key-id'];
    if (ArrayBuffer.isView(id)) ids.add(Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('utf8'));
    for (const value of Object.values(node)) visit(value);
  };
  visit(history);
  return [...ids].sort();
}
