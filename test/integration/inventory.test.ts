import { execFile } from 'node:child_process';
import path from 'node:path';
import { addStock, listStock, setStock, StockError } from '../../src/inventory/stock';
import { createTestSchema, uniqueId } from '../helpers/context';

let schema: Awaited<ReturnType<typeof createTestSchema>>;
beforeAll(async () => {
  schema = await createTestSchema('inventory');
});
afterAll(async () => {
  await schema?.drop();
});

const hold = (sku: string, n: number) => schema.db.query('UPDATE inventory SET reserved = reserved + $2 WHERE sku = $1', [sku, n]);

test('set creates a SKU and counts it; add receives and writes off', async () => {
  const sku = uniqueId('sku');
  expect(await setStock(schema.db, sku, 10)).toEqual({ sku, onHand: 10, reserved: 0, available: 10 });
  expect(await addStock(schema.db, sku, 5)).toMatchObject({ onHand: 15, available: 15 });
  expect(await addStock(schema.db, sku, -3)).toMatchObject({ onHand: 12 });
  expect(await listStock(schema.db, [sku])).toEqual([{ sku, onHand: 12, reserved: 0, available: 12 }]);
});

test('units held by sagas in flight cannot be counted or written away; the row is left as it was', async () => {
  const sku = uniqueId('sku');
  await setStock(schema.db, sku, 10);
  await hold(sku, 7);
  await expect(setStock(schema.db, sku, 6)).rejects.toThrow(/7 units are held by orders in flight/);
  await expect(addStock(schema.db, sku, -4)).rejects.toThrow(/cannot write off 4; 10 on hand, 7 held/);
  expect(await listStock(schema.db, [sku])).toEqual([{ sku, onHand: 10, reserved: 7, available: 3 }]);
  expect(await setStock(schema.db, sku, 7)).toMatchObject({ onHand: 7, reserved: 7, available: 0 });
});

test.each([
  ['a SKU with a NUL byte', () => setStock(schema.db, 'wid\u0000get', 1), /sku/],
  ['a negative count', () => setStock(schema.db, uniqueId('sku'), -1), /units on hand/],
  ['a fractional count', () => setStock(schema.db, uniqueId('sku'), 1.5), /units on hand/],
  ['a write-off of an unknown SKU', () => addStock(schema.db, uniqueId('sku'), -1), /no such SKU/],
  ['adding 0', () => addStock(schema.db, uniqueId('sku'), 0), /must not be 0/],
])('%s is refused with a StockError and writes nothing', async (_name, call, message) => {
  const before = (await schema.db.query('SELECT count(*)::int AS n FROM inventory')).rows[0];
  const err = await call().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(StockError);
  expect((err as Error).message).toMatch(message);
  expect((await schema.db.query('SELECT count(*)::int AS n FROM inventory')).rows[0]).toEqual(before);
});

test('npm run inventory: usage errors exit 2 and name the commands', async () => {
  const run = (args: string[]) =>
    new Promise<{ code: number; stderr: string }>((resolve) =>
      execFile('npx', ['ts-node', '--transpile-only', 'bin/inventory.ts', ...args], { cwd: path.resolve(__dirname, '../..') }, (err, _o, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code) : 0, stderr }),
      ),
    );
  const bad = await run(['set', 'widget', 'lots']);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/usage: npm run inventory -- list/);
}, 60_000);
