import type { Db, Tx } from '../db/pool';

/**
 * HTTP Idempotency-Key records (one per client and key), after brandur's
 * "Implementing Stripe-like Idempotency Keys in Postgres": the key row commits
 * with the order row, carries a lease while its request is in flight, and keeps
 * the exact response once done.
 */
export type Claim =
  | { kind: 'new'; orderId: string }
  | { kind: 'heal'; orderId: string }
  | { kind: 'replay'; orderId: string; status: number; body: string }
  | { kind: 'mismatch' }
  | { kind: 'in-flight'; retryAfterSeconds: number };

export interface ClaimRequest {
  clientId: string;
  key: string;
  fingerprint: string;
  /** Used only if the key is new. */
  newOrderId: string;
  ttlMs: number;
  leaseMs: number;
}

export async function claimKey(tx: Tx, r: ClaimRequest): Promise<Claim> {
  // An expired key is forgotten: the request starts afresh.
  await tx.query('DELETE FROM idempotency_keys WHERE client_id = $1 AND key = $2 AND expires_at <= now()', [
    r.clientId,
    r.key,
  ]);
  const inserted = await tx.query(
    `INSERT INTO idempotency_keys (client_id, key, fingerprint, order_id, state, locked_until, expires_at)
     VALUES ($1, $2, $3, $4, 'in_flight', now() + $5 * interval '1 ms', now() + $6 * interval '1 ms')
     ON CONFLICT (client_id, key) DO NOTHING RETURNING order_id`,
    [r.clientId, r.key, r.fingerprint, r.newOrderId, r.leaseMs, r.ttlMs],
  );
  if (inserted.rowCount === 1) return { kind: 'new', orderId: r.newOrderId };

  const existing = await tx.query<{
    fingerprint: string;
    order_id: string;
    state: 'in_flight' | 'completed';
    lease_left_ms: number;
    response_status: number | null;
    response_body: string | null;
  }>(
    `SELECT fingerprint, order_id, state, response_status, response_body,
            (extract(epoch FROM locked_until - now()) * 1000)::int AS lease_left_ms
       FROM idempotency_keys WHERE client_id = $1 AND key = $2 FOR UPDATE`,
    [r.clientId, r.key],
  );
  const row = existing.rows[0];
  if (!row) throw new Error('idempotency key vanished under its lock');
  if (row.fingerprint !== r.fingerprint) return { kind: 'mismatch' };
  if (row.state === 'completed') {
    return { kind: 'replay', orderId: row.order_id, status: row.response_status ?? 200, body: row.response_body ?? '' };
  }
  if (row.lease_left_ms > 0) return { kind: 'in-flight', retryAfterSeconds: Math.max(1, Math.ceil(row.lease_left_ms / 1000)) };
  // The request that held it died between its commit and its answer: this retry finishes its work.
  await tx.query(
    `UPDATE idempotency_keys SET locked_until = now() + $3 * interval '1 ms' WHERE client_id = $1 AND key = $2`,
    [r.clientId, r.key, r.leaseMs],
  );
  return { kind: 'heal', orderId: row.order_id };
}

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

export async function purgeExpiredKeys(db: Db): Promise<number> {
  const res = await db.query('DELETE FROM idempotency_keys WHERE expires_at <= now()');
  return res.rowCount ?? 0;
}
