import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { readManifest, sealingKeyIds, writeHistory, writeManifest, type ManifestEntry } from './fixtures';
import { scheduledActivities } from './replay';

export interface CaptureOptions {
  /** A list filter: which workflows to capture (e.g. `TaskQueue = 'capture-v4'`). */
  query: string;
  /** The history folder: `<label>-<scenario>.json` files and their manifest.json. */
  dir: string;
  /** Names this generation of histories, e.g. `v4`; the file name's prefix. */
  label: string;
  /** The scenario a workflow ran, for file names and messages (default: its workflow ID). */
  scenarioOf?: (workflowId: string) => string;
  /** Recorded in the manifest: which build produced the histories. */
  codeVersion: string;
}

/**
 * Writes the histories of the workflows a list query finds as replay fixtures,
 * with a manifest entry each (type, scenario, workflow ID, code version, date,
 * status, scheduled activities, and the IDs of the keys its payloads were
 * sealed with, if any). Histories are written as the server keeps them:
 * encrypted payloads stay encrypted. Returns the entries written.
 */
export async function captureHistories(client: Client, opts: CaptureOptions): Promise<ManifestEntry[]> {
  const manifest = readManifest(opts.dir);
  const written: ManifestEntry[] = [];
  for await (const item of client.workflow.list({ query: opts.query }).intoHistories()) {
    const { workflowId } = item;
    const history = item.history as temporal.api.history.v1.IHistory;
    const described = await client.workflow.getHandle(workflowId).describe();
    const scenario = opts.scenarioOf?.(workflowId) ?? workflowId;
    const file = `${opts.label}-${scenario.replace(/[^A-Za-z0-9_-]+/g, '_')}.json`;
    writeHistory(opts.dir, file, history);
    const entry: ManifestEntry = {
      file,
      scenario,
      workflowType: described.type,
      workflowId,
      codeVersion: opts.codeVersion,
      capturedAt: new Date().toISOString(),
      status: described.status.name,
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
