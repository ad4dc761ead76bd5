/**
 * PostgreSQL's connection budget. Every process that shares one server opens up
 * to its pool's size: sagaflow's API, workers and services (DATABASE_POOL_MAX
 * each) and, on a self-hosted Temporal cluster that keeps its data on the same
 * server, each Temporal host (maxConns per datastore). Together they must fit
 * `max_connections` less the superuser reserve, or under load some get "sorry,
 * too many clients already" and fail their work. docs/operations.md,
 * "Connection budget", sizes both sides.
 */

/** Who may open connections: `processes` of them, up to `each` apiece. */
export interface ConnectionClaim {
  who: string;
  processes: number;
  each: number;
}

export interface ConnectionLimits {
  maxConnections: number;
  /** superuser_reserved_connections (and reserved_connections from PostgreSQL 16): not for ordinary roles. */
  reserved: number;
}

export interface ConnectionBudget {
  claims: ConnectionClaim[];
  needed: number;
  allowed: number;
  fits: boolean;
}

export function planConnections(claims: ConnectionClaim[], limits: ConnectionLimits): ConnectionBudget {
  const needed = claims.reduce((n, c) => n + c.processes * c.each, 0);
  const allowed = limits.maxConnections - limits.reserved;
  return { claims, needed, allowed, fits: needed <= allowed };
}

/** The budget as one line per claim and a total, for a start-up error or a log. */
export function describeBudget(b: ConnectionBudget): string {
  const lines = b.claims.map((c) => `  ${c.who}: ${c.processes} × ${c.each} = ${c.processes * c.each}`);
  return [...lines, `  needed ${b.needed}, PostgreSQL allows ${b.allowed}`].join('\n');
}

/** What the server allows ordinary roles: max_connections less its reserves. */
export async function readConnectionLimits(db: { query(sql: string): Promise<{ rows: unknown[] }> }): Promise<ConnectionLimits> {
  const res = await db.query(
    `SELECT current_setting('max_connections')::int AS max,
            current_setting('superuser_reserved_connections')::int
              + coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved`,
  );
  const row = res.rows[0] as { max: number; reserved: number };
  return { maxConnections: row.max, reserved: row.reserved };
}
