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
  /**
   * The IDs of the keys the history's payloads were sealed with (absent: none, it is plaintext).
   * Replaying it needs every one of them in the replay's payload codec.
   */
  payloadKeyIds?: string[];
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

/**
 * The key IDs a history's payloads were sealed with, sorted: the `encryption-key-id`
 * metadata of Temporal's encryption samples, which sagaflow's codec writes too.
 */
export function sealingKeyIds(history: temporal.api.history.v1.IHistory): string[] {
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
