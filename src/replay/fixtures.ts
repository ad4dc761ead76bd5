import fs from 'node:fs';
import path from 'node:path';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { temporal } from '@temporalio/proto';
import type { ReplayCase } from './replay';

export interface ManifestEntry {
  file: string;
  scenario: string;
  workflowType: string;
  workflowId: string;
  /** package version + commit the history was recorded with. */
  codeVersion: string;
  capturedAt: string;
  /** The workflow's status when captured: COMPLETED, FAILED, RUNNING... */
  status: string;
  /** Activity types in the order the history scheduled them. */
  activities: string[];
}

export interface Manifest {
  histories: ManifestEntry[];
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

export function writeHistory(dir: string, file: string, history: temporal.api.history.v1.IHistory): void {
  fs.mkdirSync(dir, { recursive: true });
  // Pretty-printed so a diff of a re-capture can be read.
  fs.writeFileSync(path.join(dir, file), `${JSON.stringify(JSON.parse(historyToJSON(history as temporal.api.history.v1.History)), null, 1)}\n`);
}

/** Every history the folder's manifest lists, ready for replayAll. */
export function loadCases(dir: string): (ReplayCase & { entry: ManifestEntry })[] {
  return readManifest(dir).histories.map((entry) => ({
    entry,
    workflowId: entry.workflowId,
    scenario: entry.scenario,
    history: historyFromJSON(JSON.parse(fs.readFileSync(path.join(dir, entry.file), 'utf8'))),
  }));
}
