import { randomBytes } from 'node:crypto';
import { inTransaction, type Db } from '../db/pool';
import { endpointProblem } from './addresses';
import { generateSecret, seal } from './signing';

/**
 * An API client's webhook endpoints and their deliveries. Every query is scoped
 * to the client: another client's endpoint or delivery is as absent as an unknown
 * one.
 */
export interface Endpoint {
  id: string;
  url: string;
  status: 'enabled' | 'disabled';
  disabledReason: string | null;
  createdAt: string;
}

export interface Delivery {
  id: string;
  eventId: string;
  type: string;
  orderId: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: { attempt: number; at: string; status: number | null; error: string | null; durationMs: number }[];
  nextAttemptAt: string | null;
}

export class EndpointRefused extends Error {
  override name = 'EndpointRefused';
}

interface EndpointRow {
  id: string;
  url: string;
  disabled_at: Date | null;
  disabled_reason: string | null;
  created_at: Date;
}

const view = (r: EndpointRow): Endpoint => ({
  id: r.id,
  url: r.url,
  status: r.disabled_at ? 'disabled' : 'enabled',
  disabledReason: r.disabled_reason,
  createdAt: r.created_at.toISOString(),
});

/** Registers an endpoint; the signing secret is in the answer and never again. */
export async function createEndpoint(
  db: Db,
  opts: { clientId: string; url: string; sealingKey: Buffer; allowPrivate: boolean },
): Promise<Endpoint & { secret: string }> {
  const problem = await endpointProblem(opts.url, opts.allowPrivate);
  if (problem) throw new EndpointRefused(problem);
  const secret = generateSecret();
  const id = `whe_${randomBytes(10).toString('hex')}`;
  const { rows } = await db.query<EndpointRow>(
    `INSERT INTO webhook_endpoints (id, client_id, url, secret_sealed) VALUES ($1, $2, $3, $4)
     RETURNING id, url, disabled_at, disabled_reason, created_at`,
    [id, opts.clientId, opts.url, seal(secret, opts.sealingKey)],
  );
  return { ...view(rows[0]!), secret };
}

export async function listEndpoints(db: Db, clientId: string): Promise<Endpoint[]> {
  const { rows } = await db.query<EndpointRow>(
    `SELECT id, url, disabled_at, disabled_reason, created_at FROM webhook_endpoints
      WHERE client_id = $1 AND deleted_at IS NULL ORDER BY created_at, id`,
    [clientId],
  );
  return rows.map(view);
}

/** Deletes the endpoint: nothing more is sent to it, its pending deliveries end failed. False if there is none. */
export async function deleteEndpoint(db: Db, clientId: string, id: string): Promise<boolean> {
  return inTransaction(db, async (tx) => {
    const res = await tx.query(`UPDATE webhook_endpoints SET deleted_at = now() WHERE id = $1 AND client_id = $2 AND deleted_at IS NULL`, [id, clientId]);
    if (res.rowCount !== 1) return false;
    await tx.query(
      `UPDATE webhook_deliveries SET state = 'failed', last_error = 'the endpoint was deleted', locked_until = NULL
        WHERE endpoint_id = $1 AND state = 'pending'`,
      [id],
    );
    return true;
  });
}

/** Enables a disabled endpoint again: its pending deliveries resume at once. False if there is none. */
export async function enableEndpoint(db: Db, clientId: string, id: string): Promise<boolean> {
  return inTransaction(db, async (tx) => {
    const res = await tx.query(
      `UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0
        WHERE id = $1 AND client_id = $2 AND deleted_at IS NULL`,
      [id, clientId],
    );
    if (res.rowCount !== 1) return false;
    await tx.query(`UPDATE webhook_deliveries SET next_attempt_at = now() WHERE endpoint_id = $1 AND state = 'pending'`, [id]);
    return true;
  });
}

/** The endpoint's latest deliveries (newest first), each with every attempt; undefined if there is no such endpoint. */
export async function listDeliveries(db: Db, clientId: string, endpointId: string, limit = 50): Promise<Delivery[] | undefined> {
  const own = await db.query('SELECT 1 FROM webhook_endpoints WHERE id = $1 AND client_id = $2 AND deleted_at IS NULL', [endpointId, clientId]);
  if (own.rowCount !== 1) return undefined;
  const { rows } = await db.query<{
    id: string;
    event_id: string;
    type: string;
    order_id: string;
    state: Delivery['state'];
    next_attempt_at: Date;
    attempts: { attempt: number; at: string; status: number | null; error: string | null; duration_ms: number }[];
  }>(
    `SELECT d.id, d.event_id, d.type, d.order_id, d.state, d.next_attempt_at,
            coalesce((SELECT json_agg(json_build_object('attempt', a.attempt, 'at', a.at, 'status', a.status, 'error', a.error,
                                                        'duration_ms', a.duration_ms) ORDER BY a.attempt)
                        FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS attempts
       FROM webhook_deliveries d WHERE d.endpoint_id = $1 ORDER BY d.event_position DESC LIMIT $2`,
    [endpointId, limit],
  );
  return rows.map((r) => ({
    id: r.id,
    eventId: r.event_id,
    type: r.type,
    orderId: r.order_id,
    state: r.state,
    attempts: r.attempts.map((a) => ({ attempt: a.attempt, at: new Date(a.at).toISOString(), status: a.status, error: a.error, durationMs: a.duration_ms })),
    nextAttemptAt: r.state === 'pending' ? r.next_attempt_at.toISOString() : null,
  }));
}

/**
 * Sends a delivery again (the client lost it, or its endpoint was down for longer than the
 * retries): it becomes pending, due now, with the same webhook-id and a fresh round of retries. False if there is none.
 */
export async function replayDelivery(db: Db, clientId: string, endpointId: string, deliveryId: string): Promise<boolean> {
  const res = await db.query(
    `UPDATE webhook_deliveries d SET state = 'pending', next_attempt_at = now(), locked_until = NULL, round_start = d.attempts
       FROM webhook_endpoints e
      WHERE d.id = $3 AND d.endpoint_id = $2 AND e.id = d.endpoint_id AND e.client_id = $1 AND e.deleted_at IS NULL`,
    [clientId, endpointId, deliveryId],
  );
  return res.rowCount === 1;
}
