import type { Db } from '../src/db/pool';

/** A small catalogue for a development stack, so the README's first order has stock. Existing SKUs are left alone. */
export const DEV_CATALOGUE: Record<string, number> = { widget: 100, gadget: 50, gizmo: 25 };

export async function seedCatalogue(db: Db, catalogue: Record<string, number> = DEV_CATALOGUE): Promise<string[]> {
  const res = await db.query<{ sku: string }>(
    `INSERT INTO inventory (sku, on_hand) SELECT * FROM unnest($1::text[], $2::int[])
     ON CONFLICT (sku) DO NOTHING RETURNING sku`,
    [Object.keys(catalogue), Object.values(catalogue)],
  );
  return res.rows.map((r) => r.sku);
}
