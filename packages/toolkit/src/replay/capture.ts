import fs from 'node:fs';
import path from 'node:path';
import type { Client, WorkflowExecutionStatusName } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import {
  historyFileName,
  readHistory,
  readManifest,
  sealingKeyIds,
  startedRunId,
  writeHistory,
  writeManifest,
  type Manifest,
  type ManifestEntry,
} from './fixtures';
import { scheduledActivities } from './replay';

type History = temporal.api.history.v1.IHistory;

export interface CaptureOptions {
  /** A list filter: which workflows to capture (e.g. `TaskQueue = 'capture-v4'`). Every run it lists is captured. */
  query: string;
  /** The history folder: `<label>-<scenario>.<runId>.json` files and their manifest.json. */
  dir: string;
  /** Names this generation of histories, e.g. `v4`; the file name's prefix. */
  label: string;
  /** The scenario a run shows, for file names and messages (default: its workflow ID). */
  scenarioOf?: (workflowId: string, runId: string) => string;
  /** Recorded in the manifest: which build produced the histories. */
  codeVersion: string;
}

/**
 * Writes the history of every run a list query finds as a replay fixture, one
 * file per run (`<label>-<scenario>.<runId>.json`: a workflow ID started again
 * adds a file, it does not overwrite the earlier run's), with a manifest entry
 * each that describes that run (type, scenario, workflow and run ID, code
 * version, date, status, scheduled activities, and the IDs of the keys its
 * payloads were sealed with, if any). A run the folder already holds is written
 * again over its own file, whatever its name, and keeps one entry. Histories are
 * written as the server keeps them: encrypted payloads stay encrypted. Returns
 * the entries written.
 */
export async function captureHistories(client: Client, opts: CaptureOptions): Promise<ManifestEntry[]> {
  const manifest = readManifest(opts.dir);
  const written: ManifestEntry[] = [];
  for await (const { workflowId, runId } of client.workflow.list({ query: opts.query })) {
    // This run, by its run ID: by workflow ID alone the server answers with the latest run.
    const run = client.workflow.getHandle(workflowId, runId);
    const history = (await run.fetchHistory()) as History;
    const described = await run.describe();
    const scenario = opts.scenarioOf?.(workflowId, runId) ?? workflowId;
    const file = fileOfRun(manifest, opts.dir, workflowId, runId) ?? historyFileName(opts.label, scenario, runId);
    writeHistory(opts.dir, file, history);
    const entry: ManifestEntry = {
      file,
      scenario,
      workflowType: described.type,
      workflowId,
      runId,
      codeVersion: opts.codeVersion,
      capturedAt: new Date().toISOString(),
      status: statusOf(history, described.status.name),
      activities: scheduledActivities(history),
    };
    const keyIds = sealingKeyIds(history);
    if (keyIds.length) entry.payloadKeyIds = keyIds;
    manifest.histories = manifest.histories.filter((h) => h.file !== file).concat(entry);
    written.push(entry);
  }
  writeManifest(manifest, opts.dir);
  return written;
}

/**
 * The file the folder already holds this run in: its entry's, or that of an entry written
 * before entries named their run, whose history was started as this run.
 */
function fileOfRun(manifest: Manifest, dir: string, workflowId: string, runId: string): string | undefined {
  for (const entry of manifest.histories) {
    if (entry.workflowId !== workflowId) continue;
    if (entry.runId === runId) return entry.file;
    if (entry.runId === undefined && fs.existsSync(path.join(dir, entry.file)) && startedRunId(readHistory(dir, entry.file)) === runId) {
      return entry.file;
    }
  }
  return undefined;
}

const CLOSED: Record<string, WorkflowExecutionStatusName> = {
  workflowExecutionCompletedEventAttributes: 'COMPLETED',
  workflowExecutionFailedEventAttributes: 'FAILED',
  workflowExecutionCanceledEventAttributes: 'CANCELLED',
  workflowExecutionTerminatedEventAttributes: 'TERMINATED',
  workflowExecutionContinuedAsNewEventAttributes: 'CONTINUED_AS_NEW',
  workflowExecutionTimedOutEventAttributes: 'TIMED_OUT',
};

/**
 * The run's status as its history shows it: how it closed, if the history records that;
 * otherwise the described status (RUNNING, PAUSED), or RUNNING if the run closed after its
 * history was fetched (the entry describes the file, not the run of a moment later).
 */
function statusOf(history: History, described: WorkflowExecutionStatusName): string {
  const last = history.events?.[history.events.length - 1];
  const closing = last ? Object.keys(CLOSED).find((k) => (last as Record<string, unknown>)[k]) : undefined;
  if (closing) return CLOSED[closing]!;
  return Object.values(CLOSED).includes(described) ? 'RUNNING' : described;
}
