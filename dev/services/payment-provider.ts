import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { Db, Tx } from '../../src/db/pool';
import { fingerprint } from '@sagaflow/toolkit/ledger';
import {
  answerExisting,
  FaultInjector,
  reverseOnce,
  underKey,
  type ReversalTable,
  errorReply,
  fresh,
  parseBody,
  readJsonBody,
  requireIdempotencyKey,
  startService,
  type Reply,
  type RequestContext,
  type RunningService,
  type ServiceOptions,
  type StoredResponse,
} from './http';
import { HttpError } from '../../src/http';
import { migrateDevServices } from './schema';

export type { RunningService, ServiceOptions } from './http';

/** Test card tokens that the provider always declines, as Stripe's test mode does. */
export const DECLINING_SOURCES: ReadonlySet<string> = new Set(['tok_decline', 'tok_chargeDeclined']);

const chargeRequest = z.object({
  amount_minor: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  currency: z.string().regex(/^[A-Z]{3}$/, 'must be an ISO 4217 code like USD'),
  source: z.string().min(1),
  description: z.string().optional(),
});

const refundRequest = z.object({ charge: z.string().min(1).max(255) });

type ChargeStatus = 'succeeded' | 'declined' | 'refunded' | 'canceled';

interface ChargeRow {
  idempotency_key: string;
  id: string | null;
  fingerprint: string | null;
  amount_minor: string | null; // bigint arrives as text
  currency: string | null;
  source: string | null;
  status: ChargeStatus;
  response: unknown;
  created_at: Date;
  updated_at: Date;
}

export async function startPaymentProvider(opts: ServiceOptions): Promise<RunningService> {
  const { db } = opts;
  await migrateDevServices(db);
  return startService({
    host: opts.host,
    port: opts.port,
    faults: new FaultInjector(['decline', 'error', 'latency', 'drop']),
    routes: [
      { method: 'POST', path: '/charges', handler: (ctx) => createCharge(db, ctx) },
      { method: 'POST', path: '/refunds', handler: (ctx) => createRefund(db, ctx) },
      { method: 'GET', path: '/charges/:key', handler: (ctx) => getCharge(db, ctx) },
    ],
  });
}

const REFUNDS: ReversalTable = { table: 'provider_refunds', targetColumn: 'charge_id', what: 'a different charge' };

async function createCharge(db: Db, ctx: RequestContext): Promise<Reply> {
  const key = requireIdempotencyKey(ctx.req);
  const input = parseBody(chargeRequest, await readJsonBody(ctx.req));
  // description is cosmetic, so changing it on a retry is not a different charge.
  const fp = fingerprint({ amount_minor: input.amount_minor, currency: input.currency, source: input.source });
  const declined = DECLINING_SOURCES.has(input.source) || ctx.fault?.kind === 'decline';
  const status: ChargeStatus = declined ? 'declined' : 'succeeded';
  const charge = {
    id: `ch_${randomBytes(12).toString('hex')}`,
    status,
    amount_minor: input.amount_minor,
    currency: input.currency,
    idempotency_key: key,
  };
  const stored: StoredResponse = declined
    ? {
        status_code: 402,
        body: { error: { type: 'card_error', code: 'card_declined', message: 'Your card was declined.' }, charge },
      }
    : { status_code: 200, body: charge };

  return underKey(db, 'provider_charges', key, async (tx) => {
    const inserted = await tx.query(
      `INSERT INTO provider_charges
         (idempotency_key, id, fingerprint, amount_minor, currency, source, status, response)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (idempotency_key) DO NOTHING
       RETURNING idempotency_key`,
      [key, charge.id, fp, input.amount_minor, input.currency, input.source, status, JSON.stringify(stored)],
    );
    if (inserted.rowCount === 1) return fresh(stored);

    return answerExisting(tx, 'provider_charges', key, fp);
  });
}

/**
 * Refunds a charge named by its id, as a real provider does: once. A second
 * refund of a refunded charge under another key is refused (400), a charge
 * never made cannot be named at all (404): the provider keeps nothing for a
 * key it never saw, so a refund can never stand in for a charge.
 */
async function createRefund(db: Db, ctx: RequestContext): Promise<Reply> {
  const key = requireIdempotencyKey(ctx.req);
  const { charge: chargeId } = parseBody(refundRequest, await readJsonBody(ctx.req));

  return reverseOnce(db, REFUNDS, key, chargeId, (tx) => refundCharge(tx, chargeId));
}

async function refundCharge(tx: Tx, chargeId: string): Promise<Record<string, unknown>> {
  const found = await tx.query<ChargeRow>(`SELECT * FROM provider_charges WHERE id = $1 FOR UPDATE`, [chargeId]);
  const charge = found.rows[0];
  if (!charge) throw new HttpError(404, 'resource_missing', `no such charge: ${chargeId}`);
  switch (charge.status) {
    case 'succeeded':
      await tx.query(`UPDATE provider_charges SET status = 'refunded', updated_at = now() WHERE id = $1`, [chargeId]);
      return {
        id: `re_${randomBytes(12).toString('hex')}`,
        status: 'refunded',
        charge_id: charge.id,
        amount_minor: Number(charge.amount_minor),
      };
    case 'refunded':
      throw new HttpError(400, 'charge_already_refunded', `charge ${chargeId} has already been refunded`);
    default:
      throw new HttpError(400, 'charge_not_refundable', `charge ${chargeId} is ${charge.status}: nothing was captured`);
  }
}

async function getCharge(db: Db, ctx: RequestContext): Promise<Reply> {
  const key = ctx.params['key'];
  if (key === undefined) throw new HttpError(400, 'invalid_request', 'missing charge key');
  const result = await db.query<ChargeRow>('SELECT * FROM provider_charges WHERE idempotency_key = $1', [key]);
  const row = result.rows[0];
  if (!row) return errorReply(404, 'not_found', { message: `no charge with key ${key}` });
  return {
    status: 200,
    body: { ...row, amount_minor: row.amount_minor === null ? null : Number(row.amount_minor) },
  };
}
