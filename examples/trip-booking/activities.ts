import { ApplicationFailure } from '@temporalio/common';
import { createLedger, forwardEffect, LedgerFailure, type CallOutcome, type Db, type LedgerHooks } from '@sagaflow/toolkit/ledger';
import type { SagaCause } from '@sagaflow/toolkit/workflow';
import { holdStep, TripFailure, TripStep, type HoldKind, type TripInput } from './types';

export interface TripDeps {
  db: Db;
  /** A payment provider taking Stripe-like idempotent POST /charges and /refunds. */
  paymentProviderUrl: string;
  providerTimeoutMs?: number;
  ledgerHooks?: LedgerHooks;
}

interface Keyed {
  /** The step's idempotency key, as the saga hands it to the step's run or undo. */
  key: string;
  tripId: string;
}

type DepositInput = Keyed & { amount: TripInput['deposit']; paymentToken: string };

/** An undo's input: `cause` is why the saga compensates (recorded by the ledger, never fingerprinted). */
type UndoInput = Keyed & { cause?: SagaCause };

/** The trip's activities: every one goes through the ledger, so each takes effect exactly once. */
export function createTripActivities(deps: TripDeps) {
  const ledger = createLedger(deps.db, deps.ledgerHooks);
  const record = ledger.step(TripStep.recordTrip);
  const holds = {
    flight: ledger.step(holdStep.flight),
    hotel: ledger.step(holdStep.hotel),
    car: ledger.step(holdStep.car),
  };
  const deposit = ledger.step(TripStep.chargeDeposit);
  const book = ledger.step(TripStep.bookTrip);
  const itinerary = ledger.step(TripStep.issueItinerary);
  const post = (path: string, key: string, body: unknown) => postIdempotent(`${deps.paymentProviderUrl}${path}`, key, body, deps.providerTimeoutMs ?? 5000);
  // The deposit's charge request: sent by the step, and sent again by its undo when the step is pending.
  const chargeRequest = (key: string, input: DepositInput) =>
    post('/charges', key, { amount_minor: input.amount.amountMinor, currency: input.amount.currency, source: input.paymentToken });

  return {
    async recordTrip(input: { key: string; trip: TripInput }): Promise<{ tripId: string }> {
      const { trip } = input;
      return record.local(input.key, trip, async (tx) => {
        await tx.query(`INSERT INTO trips (id, traveller, status) VALUES ($1, $2, 'pending') ON CONFLICT (id) DO NOTHING`, [
          trip.tripId,
          trip.traveller,
        ]);
        return { tripId: trip.tripId };
      });
    },

    /** Closes the trip as `cancelled` or `failed` with the reason, from the cause (older trips pass both themselves). */
    async closeTrip(input: UndoInput & { status?: 'cancelled' | 'failed'; reason?: string }): Promise<{ closed: boolean }> {
      const { cause } = input;
      const status = cause ? (cause.cancelled ? 'cancelled' : 'failed') : (input.status ?? 'failed');
      const reason = cause ? `${cause.failure.type}: ${cause.failure.message}` : (input.reason ?? '');
      return record.localUndo(input.key, input, async (tx) => {
        const res = await tx.query(`UPDATE trips SET status = $2, failure_reason = $3 WHERE id = $1 AND status = 'pending'`, [
          input.tripId,
          status,
          reason.replaceAll('\u0000', '\ufffd'),
        ]);
        return { closed: res.rowCount === 1 };
      });
    },

    /** Holds one unit of the item, or fails with SoldOut; the hold and its record commit together. */
    async holdItem(input: Keyed & { kind: HoldKind; item: string }): Promise<{ held: string }> {
      return holds[input.kind].local(input.key, input, async (tx) => {
        const taken = await tx.query(
          `UPDATE trip_inventory SET held = held + 1 WHERE kind = $1 AND item = $2 AND held + booked < capacity`,
          [input.kind, input.item],
        );
        if (taken.rowCount !== 1) {
          throw ApplicationFailure.nonRetryable(`${input.kind} ${input.item} is sold out`, TripFailure.SoldOut);
        }
        await tx.query(`INSERT INTO trip_holds (trip_id, kind, item, status) VALUES ($1, $2, $3, 'held')`, [
          input.tripId,
          input.kind,
          input.item,
        ]);
        return { held: input.item };
      });
    },

    /** Releases the hold if there is one; releasing a hold that never happened does nothing. */
    async releaseItem(input: UndoInput & { kind: HoldKind }): Promise<{ released: boolean }> {
      return holds[input.kind].localUndo(input.key, input, async (tx) => {
        const res = await tx.query(
          `WITH released AS (
             UPDATE trip_holds SET status = 'released' WHERE trip_id = $1 AND kind = $2 AND status = 'held' RETURNING item)
           UPDATE trip_inventory i SET held = i.held - 1 FROM released r WHERE i.kind = $2 AND i.item = r.item`,
          [input.tripId, input.kind],
        );
        return { released: res.rowCount === 1 };
      });
    },

    /** The deposit, charged with the step key as the provider's Idempotency-Key. */
    async chargeDeposit(input: DepositInput): Promise<{ chargeId: string }> {
      return deposit.external(input.key, input, {
        async prepare(tx) {
          await tx.query(
            `INSERT INTO trip_deposits (idempotency_key, trip_id, amount_minor, currency, status)
             VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT DO NOTHING`,
            [input.key, input.tripId, input.amount.amountMinor, input.amount.currency],
          );
        },
        async call(): Promise<CallOutcome<{ chargeId: string }>> {
          const res = await chargeRequest(input.key, input);
          if (res.status === 402) return { ok: false, failure: { type: TripFailure.DepositDeclined, message: 'deposit declined' } };
          return { ok: true, result: { chargeId: String((res.body as { id: string }).id) } };
        },
        async confirm(tx, outcome) {
          await tx.query(
            `UPDATE trip_deposits SET status = $2, provider_charge_id = $3 WHERE idempotency_key = $1 AND status = 'pending'`,
            [input.key, outcome.ok ? 'captured' : 'declined', outcome.ok ? outcome.result.chargeId : null],
          );
        },
      });
    },

    /** Refunds the deposit if it was taken: what the charge step did decides (forwardEffect). */
    async refundDeposit(input: UndoInput): Promise<{ status: string }> {
      return deposit.externalUndo<{ status: string }, { chargeId: string }>(input.key, input, {
        async call(ctx) {
          const charge = await forwardEffect<{ chargeId: string }, DepositInput>(ctx, async (forward) => {
            const res = await chargeRequest(ctx.forwardKey, forward);
            return res.status === 402 ? null : { chargeId: String((res.body as { id: string }).id) };
          });
          if (!charge) return { status: 'nothing_to_refund' };
          const res = await post('/refunds', input.key, { charge: charge.chargeId });
          return { status: String((res.body as { status: string }).status) };
        },
        async confirm(tx, result, { forwardKey }) {
          await tx.query(
            `UPDATE trip_deposits SET status = CASE WHEN $2 = 'refunded' THEN 'refunded' ELSE 'voided' END
              WHERE idempotency_key = $1 AND status IN ('pending', 'captured')`,
            [forwardKey, result.status],
          );
        },
      });
    },

    /** The point of no return: every hold becomes a booking, and the trip is confirmed. */
    async bookTrip(input: Keyed): Promise<{ booked: number }> {
      return book.local(input.key, input, async (tx) => {
        const res = await tx.query(
          `WITH booked AS (
             UPDATE trip_holds SET status = 'booked' WHERE trip_id = $1 AND status = 'held' RETURNING kind, item),
           inv AS (
             UPDATE trip_inventory i SET held = i.held - 1, booked = i.booked + 1
               FROM booked b WHERE i.kind = b.kind AND i.item = b.item RETURNING i.item)
           UPDATE trips SET status = 'confirmed' WHERE id = $1 AND status = 'pending'`,
          [input.tripId],
        );
        return { booked: res.rowCount ?? 0 };
      });
    },

    async issueItinerary(input: Keyed): Promise<{ issued: true }> {
      return itinerary.local(input.key, input, async (tx) => {
        await tx.query(
          `UPDATE trips t SET itinerary = (
             SELECT jsonb_object_agg(kind, item) FROM trip_holds WHERE trip_id = t.id AND status = 'booked')
            WHERE id = $1`,
          [input.tripId],
        );
        return { issued: true as const };
      });
    },
  };
}

export type TripActivities = ReturnType<typeof createTripActivities>;

/**
 * POSTs with the step key as Idempotency-Key. Unreachable, timed out, 5xx, or
 * 409 (a request with this key still in progress): retryable. 422 (the key
 * reused with another body) is the ledger's own answer; any other 4xx but 402 is a bug.
 */
async function postIdempotent(url: string, key: string, body: unknown, timeoutMs: number): Promise<{ status: number; body: unknown }> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    throw ApplicationFailure.retryable(`${url} unreachable: ${(err as Error).message}`, TripFailure.PaymentUnavailable);
  }
  const text = await res.text();
  if (res.status >= 500) throw ApplicationFailure.retryable(`${url} answered ${res.status}`, TripFailure.PaymentUnavailable);
  if (res.status === 409) throw ApplicationFailure.retryable(`${key} is in use by a request still in progress`, TripFailure.PaymentUnavailable);
  if (res.status === 422) throw ApplicationFailure.nonRetryable(`${key} reused with another request`, LedgerFailure.IdempotencyConflict);
  if (res.status >= 400 && res.status !== 402) throw ApplicationFailure.nonRetryable(`${url} refused ${key}: ${res.status} ${text}`, 'Rejected');
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : null };
}
