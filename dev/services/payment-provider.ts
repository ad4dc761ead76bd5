import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { inTransaction, type Db, type Tx } from '../../src/db/pool';
import { fingerprint } from '../../src/ledger/fingerprint';
import {
  answerExisting,
  FaultInjector,
  lockOrTombstone,
  reverseOnce,
  type EffectTable,
  type ReversalTable,
  errorReply,
  fresh,
  parseBody,
  requireIdempotencyKey,
  startService,
  type Reply,
  type RequestContext,
  type RunningService,
  type ServiceOptions,
  type StoredResponse,
} from './http';
import { HttpError, readJson } from '../../src/http';
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

const refundRequest = z.object({ charge_key: z.string().min(1).max(255) });

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

const CHARGES: EffectTable = {
  table: 'provider_charges',
  canceled: { type: 'charge_canceled', message: 'this idempotency key was refunded before any charge' },
};
const REFUNDS: ReversalTable = { table: 'provider_refunds', targetColumn: 'charge_key', what: 'a different charge' };

async function createCharge(db: Db, ctx: RequestContext): Promise<Reply> {
  const key = requireIdempotencyKey(ctx.req);
  const input = parseBody(chargeRequest, await readJson(ctx.req));
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

  return inTransaction(db, async (tx) => {
    // A concurrent insert of the same key makes this wait for that transaction,
    // so exactly one request creates the charge and the others replay it.
    const inserted = await tx.query(
      `INSERT INTO provider_charges
         (idempotency_key, id, fingerprint, amount_minor, currency, source, status, response)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (idempotency_key) DO NOTHING
       RETURNING idempotency_key`,
      [key, charge.id, fp, input.amount_minor, input.currency, input.source, status, JSON.stringify(stored)],
    );
    if (inserted.rowCount === 1) return fresh(stored);

    return answerExisting(tx, CHARGES, key, fp);
  });
}

async function createRefund(db: Db, ctx: RequestContext): Promise<Reply> {
  const key = requireIdempotencyKey(ctx.req);
  const { charge_key: chargeKey } = parseBody(refundRequest, await readJson(ctx.req));

  return reverseOnce(db, REFUNDS, key, chargeKey, (tx) => refundCharge(tx, chargeKey));
}

async function refundCharge(tx: Tx, chargeKey: string): Promise<Record<string, unknown>> {
  const charge = await lockOrTombstone<ChargeRow>(tx, CHARGES, chargeKey);
  if (!charge) return { status: 'canceled' };
  switch (charge.status) {
    case 'succeeded':
      await tx.query(
        `UPDATE provider_charges SET status = 'refunded', updated_at = now() WHERE idempotency_key = $1`,
        [chargeKey],
      );
      return { status: 'refunded', charge_id: charge.id, amount_minor: Number(charge.amount_minor) };
    case 'refunded':
      return { status: 'refunded', charge_id: charge.id, amount_minor: Number(charge.amount_minor) };
    case 'declined':
      return { status: 'nothing_to_refund' };
    case 'canceled':
      return { status: 'canceled' };
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
