import fs from 'node:fs';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { strictPayloadConverterPath } from '@sagaflow/toolkit/converter';
import { PACKAGE_ROOT } from '../src/paths';
import { toolkitBundlerOptions } from './toolkit-source';
import { WORKFLOWS_PATH } from './worker';

export const DEFAULT_BUNDLE_PATH = path.join(PACKAGE_ROOT, 'dist', 'workflow-bundle.js');

/**
 * Bundles the workflow code ahead of time, so a worker starts without running webpack. A bundle
 * carries its payload converter (a worker given a bundle ignores its data converter's path in
 * workflow code), so it is built with the strict one every process of the service uses.
 */
export async function buildWorkflowBundle(out = DEFAULT_BUNDLE_PATH): Promise<{ path: string; bytes: number }> {
  const { code } = await bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, payloadConverterPath: strictPayloadConverterPath, ...toolkitBundlerOptions() });
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, code);
  return { path: out, bytes: Buffer.byteLength(code) };
}

/**
 * The prebuilt bundle if there is one and it is newer than every file it is built from: the
 * workflows folder, its subfolders included, and the toolkit's sources where they are (a checkout).
 */
export function prebuiltBundle(file = DEFAULT_BUNDLE_PATH): { codePath: string } | undefined {
  if (!fs.existsSync(file)) return undefined;
  const built = fs.statSync(file).mtimeMs;
  const sources = [path.dirname(WORKFLOWS_PATH), path.join(PACKAGE_ROOT, 'packages', 'toolkit', 'src')].filter((d) => fs.existsSync(d));
  return sources.some((dir) => newerThan(dir, built)) ? undefined : { codePath: file };
}

function newerThan(dir: string, ms: number): boolean {
  return fs.readdirSync(dir, { withFileTypes: true }).some((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? newerThan(p, ms) : fs.statSync(p).mtimeMs > ms;
  });
}
