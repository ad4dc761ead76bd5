import { Gauge, type Registry } from 'prom-client';
import type { Db } from '../db/pool';
import { within } from './metrics';

/**
 * Sagas that have not ended, read from the orders table at scrape time, so an
 * alert can say "a saga has been running (or compensating) too long" from a
 * metric, whichever process ran it and whether or not that process still runs.
 *
 * An order is open while `orders.status` is 'pending' (completed, cancelled and
 * failed are final: only a saga's last step or its last compensation writes
 * them). An open order is, by what its rows say:
 * - `compensating`: its saga has tombstoned a step (a step_ledger row of its
 *   workflow in state 'cancelled', the same test the ledger uses to refuse late
 *   forward attempts). Its age counts from the first tombstone: when the
 *   compensation began.
 * - `not_started`: no saga is known to have started (`saga_started_at` is NULL):
 *   the request or message died between committing the order and starting its
 *   saga. The API's recovery job starts these after a lease of seconds; one that
 *   stays is an orphan. Its age counts from the order's creation.
 * - `running`: every other open order, its saga going forward. Its age counts
 *   from the order's creation.
 */
export const OPEN_SAGA_STATUSES = ['not_started', 'running', 'compensating'] as const;
export type OpenSagaStatus = (typeof OPEN_SAGA_STATUSES)[number];

/**
 * One statement per scrape. The open orders come from the partial index orders_open_idx
 * (migration 015: only the orders whose status is 'pending', however many have ended), and the
 * lateral subquery finds a saga's tombstones through step_ledger_workflow_idx.
 */
export const OPEN_SAGAS_SQL = `
SELECT status, count(*)::int AS open, extract(epoch FROM now() - min(since))::float8 AS oldest_seconds
  FROM (SELECT CASE WHEN c.since IS NOT NULL THEN 'compensating'
                    WHEN o.saga_started_at IS NULL THEN 'not_started'
                    ELSE 'running' END AS status,
               coalesce(c.since, o.created_at) AS since
          FROM orders o
          LEFT JOIN LATERAL (SELECT min(l.updated_at) AS since
                               FROM step_ledger l
                              WHERE l.workflow_id = o.workflow_id AND l.state = 'cancelled') c ON true
         WHERE o.status = 'pending') open_orders
 GROUP BY status`;

export interface OpenSagaCounts {
  status: OpenSagaStatus;
  open: number;
  /** Seconds since the oldest of them started its current phase; 0 when there is none. */
  oldestSeconds: number;
}

/** The open sagas by status, every status present (0 when it has none). */
export async function readOpenSagas(db: Db): Promise<OpenSagaCounts[]> {
  const { rows } = await db.query<{ status: OpenSagaStatus; open: number; oldest_seconds: number | null }>(OPEN_SAGAS_SQL);
  return OPEN_SAGA_STATUSES.map((status) => {
    const row = rows.find((r) => r.status === status);
    return { status, open: row?.open ?? 0, oldestSeconds: Math.max(0, row?.oldest_seconds ?? 0) };
  });
}

export interface OpenSagaMetricsOptions {
  /** A read that takes longer leaves the gauges at their last values; the scrape never hangs on the database. */
  timeoutMs?: number;
}

/**
 * Registers `sagaflow_orders_open{status}` and
 * `sagaflow_orders_oldest_open_age_seconds{status}` on `registry`, both set by
 * one query at each scrape (both gauges share it). A read that fails or takes
 * over `timeoutMs` (2 s) leaves them at their last values, as SagaMetrics'
 * other scrape-time gauges do. One process should export them (the API): every
 * replica would export the same numbers.
 */
export function registerOpenSagaMetrics(registry: Registry, db: Db, opts: OpenSagaMetricsOptions = {}): { open: Gauge<'status'>; oldestAge: Gauge<'status'> } {
  const timeoutMs = opts.timeoutMs ?? 2000;
  let inFlight: Promise<void> | undefined;
  const refresh = (): Promise<void> => {
    inFlight ??= within(readOpenSagas(db), timeoutMs)
      .then((counts) => {
        for (const c of counts) {
          open.set({ status: c.status }, c.open);
          oldestAge.set({ status: c.status }, c.oldestSeconds);
        }
      })
      .catch(() => undefined)
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };
  const open: Gauge<'status'> = new Gauge({
    name: 'sagaflow_orders_open',
    help: 'Orders whose saga has not ended, by status: not_started (no saga started yet), running, compensating (read from PostgreSQL at scrape)',
    labelNames: ['status'] as const,
    registers: [registry],
    collect: refresh,
  });
  const oldestAge: Gauge<'status'> = new Gauge({
    name: 'sagaflow_orders_oldest_open_age_seconds',
    help: 'Age of the oldest open order by status, 0 if none: since its creation, or since its compensation began (read from PostgreSQL at scrape)',
    labelNames: ['status'] as const,
    registers: [registry],
    collect: refresh,
  });
  // Every status from the start, at 0: an alert on a series that does not exist yet never fires.
  for (const status of OPEN_SAGA_STATUSES) {
    open.set({ status }, 0);
    oldestAge.set({ status }, 0);
  }
  return { open, oldestAge };
}

