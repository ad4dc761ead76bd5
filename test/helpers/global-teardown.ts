import fs from 'node:fs';
import type { RunningPostgres } from '../../dev/postgres';
import type { TemporalServer } from '../../dev/temporal';

export default async function globalTeardown(): Promise<void> {
  const handles = (globalThis as Record<string, unknown>).__sagaflowStack as
    | { pg?: RunningPostgres; temporal?: TemporalServer; dir?: string }
    | undefined;
  await handles?.temporal?.stop();
  await handles?.pg?.stop();
  if (handles?.dir) fs.rmSync(handles.dir, { recursive: true, force: true });
}
