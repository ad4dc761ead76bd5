import { type Db, type Tx } from '../db';
import { migrateSchema, schemaSql, type ModuleSchema } from '../schema-versions';

/**
 * HTTP Idempotency-Key records (one per client and key), after brandur's
 * "Implementing Stripe-like Idempotency Keys in Postgres": the key row commits
 * in the same transaction as the resource its request creates, carries a lease
 * while that request is in flight, and keeps the exact response once done.
 * Usable from any HTTP server: nothing here knows HTTP frameworks or orders.
 *
 * The rules a server applies to a claim:
 * - `new`: create the resource (same transaction), do the work, then completeKey;
 * - `replay`: answer the stored status and body, byte for byte;
 * - `mismatch`: the key was used with another request body: 422;
 * - `in-flight`: the first request still holds the lease: 409 with Retry-After;
 * - `heal`: the first request died after its commit: finish its work (idempotently), then completeKey.
 */
export type Claim =
  | { kind: 'new'; resourceId: string }
  | { kind: 'heal'; resourceId: string }
  | { kind: 'replay'; resourceId: string; status: number; body: string }
  | { kind: 'mismatch' }
  | { kind: 'in-flight'; retryAfterSeconds: number };

export interface ClaimRequest {
  clientId: string;
  key: string;
  fingerprint: string;
  /** The resource a new key maps to; used only if the key is new. */
  newResourceId: string;
  ttlMs: number;
  leaseMs: number;
}

/** A key as a header may carry it: 1 to 255 visible ASCII characters. */
export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

/** Claims the key inside the caller's transaction, the one that also creates the resource. */
export async function claimKey(tx: Tx, r: ClaimRequest): Promise<Claim> {
  // An expired key is forgotten: the request starts afresh.
  await tx.query('DELETE FROM idempotency_keys WHERE client_id = $1 AND key = $2 AND expires_at <= now()', [
    r.clientId,
    r.key,
  ]);
  const inserted = await tx.query(
    `INSERT INTO idempotency_keys (client_id, key, fingerprint, resource_id, state, locked_until, expires_at)
     VALUES ($1, $2, $3, $4, 'in_flight', now() + $5 * interval '1 ms', now() + $6 * interval '1 ms')
     ON CONFLICT (client_id, key) DO NOTHING RETURNING resource_id`,
    [r.clientId, r.key, r.fingerprint, r.newResourceId, r.leaseMs, r.ttlMs],
  );
  if (inserted.rowCount === 1) return { kind: 'new', resourceId: r.newResourceId };

  const existing = await tx.query<{
    fingerprint: string;
    resource_id: string;
    state: 'in_flight' | 'completed';
    lease_left_ms: number;
    response_status: number | null;
    response_body: string | null;
  }>(
    `SELECT fingerprint, resource_id, state, response_status, response_body,
            (extract(epoch FROM locked_until - now()) * 1000)::int AS lease_left_ms
       FROM idempotency_keys WHERE client_id = $1 AND key = $2 FOR UPDATE`,
    [r.clientId, r.key],
  );
  const row = existing.rows[0];
  if (!row) throw new Error('idempotency key vanished under its lock');
  if (row.fingerprint !== r.fingerprint) return { kind: 'mismatch' };
  if (row.state === 'completed') {
    return { kind: 'replay', resourceId: row.resource_id, status: row.response_status ?? 200, body: row.response_body ?? '' };
  }
  if (row.lease_left_ms > 0) return { kind: 'in-flight', retryAfterSeconds: Math.max(1, Math.ceil(row.lease_left_ms / 1000)) };
  // The request that held it died between its commit and its answer: this retry finishes its work.
  await tx.query(
    `UPDATE idempotency_keys SET locked_until = now() + $3 * interval '1 ms' WHERE client_id = $1 AND key = $2`,
    [r.clientId, r.key, r.leaseMs],
  );
  return { kind: 'heal', resourceId: row.resource_id };
}

/** Stores the answer: every later request with this key and body gets exactly these bytes. */
export async function completeKey(db: Db, clientId: string, key: string, status: number, body: string): Promise<void> {
  await db.query(
    `UPDATE idempotency_keys SET state = 'completed', response_status = $3, response_body = $4, locked_until = now()
      WHERE client_id = $1 AND key = $2 AND state = 'in_flight'`,
    [clientId, key, status, body],
  );
}

/** After a failure we answered with a 5xx: let the client's retry take over at once. */
export async function releaseLease(db: Db, clientId: string, key: string): Promise<void> {
  await db.query(
    `UPDATE idempotency_keys SET locked_until = now() WHERE client_id = $1 AND key = $2 AND state = 'in_flight'`,
    [clientId, key],
  );
}

/** Forgets keys past their TTL; run it periodically. Returns how many were deleted. */
export async function purgeExpiredKeys(db: Db): Promise<number> {
  const res = await db.query('DELETE FROM idempotency_keys WHERE expires_at <= now()');
  return res.rowCount ?? 0;
}

/**
 * The records' table, defined here and nowhere else: its numbered migrations,
 * applied by migrateEdge (sagaflow's own `migrate` applies them before the
 * order service's tables, which add a foreign key of its own to its clients).
 * Version 1 is safe on a database an older sagaflow built through the
 * service's migrations (002, 005): it renames that table's `order_id`.
 */
export const EDGE_SCHEMA: ModuleSchema = {
  module: 'edge',
  migrations: [
    {
      version: 1,
      name: 'idempotency_keys',
      sql: `
CREATE TABLE IF NOT EXISTS idempotency_keys (
  client_id       text NOT NULL,
  key             text NOT NULL,
  fingerprint     text NOT NULL,
  resource_id     text NOT NULL,
  state           text NOT NULL CHECK (state IN ('in_flight', 'completed')),
  locked_until    timestamptz NOT NULL,
  response_status integer,
  response_body   text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  PRIMARY KEY (client_id, key)
);
DO $$
BEGIN
  -- A record maps a key to whatever resource its first request created; the first table named it an order.
  IF EXISTS (SELECT 1 FROM information_schema.columns
              WHERE table_schema = current_schema() AND table_name = 'idempotency_keys' AND column_name = 'order_id') THEN
    ALTER TABLE idempotency_keys RENAME COLUMN order_id TO resource_id;
  END IF;
END $$;
CREATE INDEX IF NOT EXISTS idempotency_keys_expiry_idx ON idempotency_keys (expires_at);`,
    },
  ],
};

/** Every migration's SQL in order, for a database whose migrations are run by a tool of your own. */
export const EDGE_DDL = schemaSql(EDGE_SCHEMA);

/** Creates or upgrades the records' table in the first schema of the pool's search path; safe at every start. */
export async function migrateEdge(db: Db): Promise<void> {
  await migrateSchema(db, EDGE_SCHEMA);
}
