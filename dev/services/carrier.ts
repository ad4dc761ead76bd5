import { randomBytes, randomInt } from 'node:crypto';
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

const shipmentRequest = z.object({
  order_id: z.string().min(1),
  address: z.record(z.string(), z.unknown()),
  items: z
    .array(z.object({ sku: z.string().min(1), quantity: z.number().int().positive() }))
    .min(1),
});

const voidRequest = z.object({ shipment: z.string().min(1).max(255) });

type ShipmentStatus = 'created' | 'voided' | 'canceled';

interface ShipmentRow {
  idempotency_key: string;
  id: string | null;
  fingerprint: string | null;
  tracking_number: string | null;
  status: ShipmentStatus;
  response: unknown;
  created_at: Date;
  updated_at: Date;
}

export async function startCarrier(opts: ServiceOptions): Promise<RunningService> {
  const { db } = opts;
  await migrateDevServices(db);
  return startService({
    host: opts.host,
    port: opts.port,
    faults: new FaultInjector(['error', 'latency', 'drop']),
    routes: [
      { method: 'POST', path: '/shipments', handler: (ctx) => createShipment(db, ctx) },
      { method: 'POST', path: '/shipments/void', handler: (ctx) => voidShipment(db, ctx) },
      { method: 'GET', path: '/shipments/:key', handler: (ctx) => getShipment(db, ctx) },
    ],
  });
}

function trackingNumber(): string {
  let digits = '';
  for (let i = 0; i < 12; i++) digits += String(randomInt(10));
  return `TRK${digits}`;
}

const VOIDS: ReversalTable = { table: 'carrier_voids', targetColumn: 'shipment_id', what: 'a different shipment' };

async function createShipment(db: Db, ctx: RequestContext): Promise<Reply> {
  const key = requireIdempotencyKey(ctx.req);
  const input = parseBody(shipmentRequest, await readJsonBody(ctx.req));
  const fp = fingerprint({ order_id: input.order_id, address: input.address, items: input.items });
  const shipment = { id: `shp_${randomBytes(12).toString('hex')}`, tracking_number: trackingNumber(), status: 'created' };
  const stored: StoredResponse = { status_code: 201, body: shipment };

  return underKey(db, 'carrier_shipments', key, async (tx) => {
    const inserted = await tx.query(
      `INSERT INTO carrier_shipments (idempotency_key, id, fingerprint, tracking_number, status, response)
       VALUES ($1, $2, $3, $4, 'created', $5)
       ON CONFLICT (idempotency_key) DO NOTHING
       RETURNING idempotency_key`,
      [key, shipment.id, fp, shipment.tracking_number, JSON.stringify(stored)],
    );
    if (inserted.rowCount === 1) return fresh(stored);

    return answerExisting(tx, 'carrier_shipments', key, fp);
  });
}

/** Voids a label named by its id, once: a voided label cannot be voided again (400), an unknown one is 404. */
async function voidShipment(db: Db, ctx: RequestContext): Promise<Reply> {
  const key = requireIdempotencyKey(ctx.req);
  const { shipment: shipmentId } = parseBody(voidRequest, await readJsonBody(ctx.req));

  return reverseOnce(db, VOIDS, key, shipmentId, (tx) => voidById(tx, shipmentId));
}

async function voidById(tx: Tx, shipmentId: string): Promise<Record<string, unknown>> {
  const found = await tx.query<ShipmentRow>(`SELECT * FROM carrier_shipments WHERE id = $1 FOR UPDATE`, [shipmentId]);
  const shipment = found.rows[0];
  if (!shipment) throw new HttpError(404, 'resource_missing', `no such shipment: ${shipmentId}`);
  if (shipment.status !== 'created') {
    throw new HttpError(400, 'shipment_already_voided', `shipment ${shipmentId} is ${shipment.status}`);
  }
  await tx.query(`UPDATE carrier_shipments SET status = 'voided', updated_at = now() WHERE id = $1`, [shipmentId]);
  return { status: 'voided', shipment_id: shipment.id };
}

async function getShipment(db: Db, ctx: RequestContext): Promise<Reply> {
  const key = ctx.params['key'];
  if (key === undefined) throw new HttpError(400, 'invalid_request', 'missing shipment key');
  const result = await db.query<ShipmentRow>('SELECT * FROM carrier_shipments WHERE idempotency_key = $1', [key]);
  const row = result.rows[0];
  if (!row) return errorReply(404, 'not_found', { message: `no shipment with key ${key}` });
  return { status: 200, body: row };
}
