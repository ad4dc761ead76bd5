/**
 * Every patch ID the saga helper asks for (patched / deprecatePatch / Saga.has in packages/toolkit/src/workflow) is exported
 * from sagaflow/workflow, alone and in SAGA_PATCH_IDS: a saga's owner can search histories for it
 * and must never see it reused.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as toolkit from '../../packages/toolkit/src/workflow';

const dir = join(__dirname, '../../packages/toolkit/src/workflow');

test('each patch ID used in packages/toolkit/src/workflow is exported, by the constant the code passes, and listed once', () => {
  const used = new Set<string>();
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(join(dir, file), 'utf8');
    // Saga.has(patchId) asks patched() unless the saga runs under currentRules: its callers name the IDs.
    for (const m of text.matchAll(/\b(?:patched|deprecatePatch|this\.has)\(\s*([^)\s]+)\s*\)/g)) if (m[1] !== 'patchId') used.add(m[1]!);
  }
  expect(used.size).toBeGreaterThanOrEqual(6);
  const exported = toolkit as unknown as Record<string, unknown>;
  for (const name of used) {
    // A constant, never a literal: the literal could not be exported.
    expect([name, /^[A-Z][A-Z0-9_]*$/.test(name)]).toEqual([name, true]);
    expect([name, typeof exported[name]]).toEqual([name, 'string']);
    expect(toolkit.SAGA_PATCH_IDS).toContain(exported[name]);
  }
  expect(new Set(toolkit.SAGA_PATCH_IDS).size).toBe(toolkit.SAGA_PATCH_IDS.length);
  expect(toolkit.SAGA_PATCH_IDS.length).toBe(used.size);
});

test('the standard query and update are named as every saga registers them', () => {
  expect([toolkit.sagaStatusQuery.name, toolkit.sagaCancelUpdate.name]).toEqual(['status', 'cancel']);
});
