import { randomUUID } from 'node:crypto';
import type { Db } from '../../src/db/pool';
import { startCarrier } from '../../dev/services/carrier';
import { startPaymentProvider } from '../../dev/services/payment-provider';
import type { RunningService } from '../../dev/services/http';
import { addFault, createTestSchema } from '../helpers/context';

let db: Db;
let dropSchema: () => Promise<void>;
let provider: RunningService;
let carrier: RunningService;

beforeAll(async () => {
  ({ db, drop: dropSchema } = await createTestSchema('svc'));
  provider = await startPaymentProvider({ db });
  carrier = await startCarrier({ db });
});

afterEach(async () => {
  await fetch(`${provider.url}/__faults`, { method: 'DELETE' });
  await fetch(`${carrier.url}/__faults`, { method: 'DELETE' });
});

afterAll(async () => {
  await provider?.close();
  await carrier?.close();
  await dropSchema?.();
});

const newKey = (prefix: string): string => `${prefix}-${randomUUID()}`;

interface Answer {
  status: number;
  body: any;
  replayed: boolean;
}

async function post(base: string, path: string, body: unknown, key?: string): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== undefined) headers['idempotency-key'] = key;
  const res = await fetch(`${base}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json(), replayed: res.headers.get('idempotent-replayed') === 'true' };
}

const charge = (key: string, body: Record<string, unknown> = {}) =>
  post(provider.url, '/charges', { amount_minor: 4200, currency: 'USD', source: 'tok_visa', ...body }, key);
const refund = (key: string, chargeId: string) => post(provider.url, '/refunds', { charge: chargeId }, key);

async function chargeRows(key: string) {
  const { rows } = await db.query('SELECT * FROM provider_charges WHERE idempotency_key = $1', [key]);
  return rows;
}

async function shipmentRows(key: string) {
  const { rows } = await db.query('SELECT * FROM carrier_shipments WHERE idempotency_key = $1', [key]);
  return rows;
}

const shipmentBody = {
  order_id: 'ord-1',
  address: { line1: '1 Main St', city: 'Springfield', country: 'US' },
  items: [{ sku: 'SKU-1', quantity: 2 }],
};

describe('payment provider', () => {
  test('same key twice creates one charge and replays the first response', async () => {
    const key = newKey('pay');
    const first = await charge(key);
    const second = await charge(key);

    expect(first.status).toBe(200);
    expect(first.replayed).toBe(false);
    expect(first.body).toMatchObject({ status: 'succeeded', amount_minor: 4200, currency: 'USD', idempotency_key: key });
    expect(first.body.id).toMatch(/^ch_/);
    expect(second).toEqual({ status: 200, body: first.body, replayed: true });

    const rows = await chargeRows(key);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: first.body.id, status: 'succeeded', amount_minor: '4200' });
    expect(rows[0].response).toEqual({ status_code: 200, body: first.body });
  });

  test('10 concurrent requests with one key produce exactly one charge', async () => {
    const key = newKey('pay');
    const answers = await Promise.all(Array.from({ length: 10 }, () => charge(key)));

    // Each is the charge, or 409 while another request with the key is in progress (retry later).
    expect(answers.filter((a) => a.status !== 200 && a.status !== 409)).toEqual([]);
    const charged = answers.filter((a) => a.status === 200);
    expect(new Set(charged.map((a) => a.body.id)).size).toBe(1);
    expect(charged.filter((a) => !a.replayed)).toHaveLength(1);
    expect(await chargeRows(key)).toHaveLength(1);
    expect(await charge(key)).toMatchObject({ status: 200, replayed: true, body: { id: charged[0]!.body.id } });
  });

  test('same key with a different body is rejected with 422 and the row is unchanged', async () => {
    const key = newKey('pay');
    const first = await charge(key);
    const before = await chargeRows(key);

    const mismatch = await charge(key, { amount_minor: 9999 });
    expect(mismatch.status).toBe(422);
    expect(mismatch.body.error.type).toBe('idempotency_mismatch');

    expect(await chargeRows(key)).toEqual(before);
    expect(before[0]).toMatchObject({ id: first.body.id, amount_minor: '4200' });
  });

  test('a decline is stored, and a retry with the same key gets the same 402', async () => {
    const key = newKey('pay');
    const first = await charge(key, { source: 'tok_decline' });
    expect(first.status).toBe(402);
    expect(first.body.error).toMatchObject({ type: 'card_error', code: 'card_declined' });
    expect(first.body.charge.status).toBe('declined');

    const retry = await charge(key, { source: 'tok_decline' });
    expect(retry).toEqual({ status: 402, body: first.body, replayed: true });

    const rows = await chargeRows(key);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'declined', id: first.body.charge.id });
  });

  test('a refund of a charge that does not exist is 404 and leaves nothing: no tombstone, a later charge goes through', async () => {
    const chargeKey = newKey('pay');
    const refundKey = newKey('refund');
    const answer = await refund(refundKey, 'ch_never_made');
    expect(answer).toMatchObject({ status: 404, body: { error: { type: 'resource_missing' } } });
    expect(await chargeRows(chargeKey)).toEqual([]);
    expect((await db.query('SELECT 1 FROM provider_refunds WHERE idempotency_key = $1', [refundKey])).rowCount).toBe(0);

    // A real provider keeps nothing for a key it never saw: a charge under any key is just a charge.
    const late = await charge(chargeKey);
    expect(late).toMatchObject({ status: 200, body: { status: 'succeeded' } });
  });

  test('refunding a charge marks it refunded; the same refund key replays; a second refund under another key is refused', async () => {
    const chargeKey = newKey('pay');
    const paid = await charge(chargeKey);
    const refundKey = newKey('refund');

    const first = await refund(refundKey, paid.body.id);
    expect(first).toMatchObject({ status: 200, body: { status: 'refunded', charge_id: paid.body.id, amount_minor: 4200 }, replayed: false });
    expect(first.body.id).toMatch(/^re_/);
    const again = await refund(refundKey, paid.body.id);
    expect(again).toEqual({ ...first, replayed: true });
    const otherKey = await refund(newKey('refund'), paid.body.id);
    expect(otherKey).toMatchObject({ status: 400, body: { error: { type: 'charge_already_refunded' } } });

    expect((await chargeRows(chargeKey))[0].status).toBe('refunded');
    const { rows } = await db.query('SELECT * FROM provider_refunds WHERE charge_id = $1', [paid.body.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ idempotency_key: refundKey, response: { status_code: 200, body: first.body } });
  });

  test('a request whose key is still in progress is refused with 409, not queued; once it ends, the key replays', async () => {
    const key = newKey('inuse');
    const holder = await db.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`provider_charges:${key}`]);
      const busy = await charge(key);
      expect(busy).toMatchObject({ status: 409, body: { error: { type: 'idempotency_key_in_use' } } });
      expect(await chargeRows(key)).toEqual([]);
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
    }
    const first = await charge(key);
    expect(first.status).toBe(200);
    expect(await charge(key)).toEqual({ ...first, replayed: true });
  });

  test('a refund key reused for a different charge is rejected with 422', async () => {
    const refundKey = newKey('refund');
    const a = await charge(newKey('pay'));
    const b = await charge(newKey('pay'));
    expect((await refund(refundKey, a.body.id)).status).toBe(200);
    const reused = await refund(refundKey, b.body.id);
    expect(reused.status).toBe(422);
    expect(reused.body.error.type).toBe('idempotency_mismatch');
    expect((await db.query('SELECT status FROM provider_charges WHERE id = $1', [b.body.id])).rows).toEqual([{ status: 'succeeded' }]);
  });

  test('refunding a declined charge is refused: nothing was captured, and it stays declined', async () => {
    const chargeKey = newKey('pay');
    const declined = await charge(chargeKey, { source: 'tok_chargeDeclined' });
    const answer = await refund(newKey('refund'), declined.body.charge.id);
    expect(answer).toMatchObject({ status: 400, body: { error: { type: 'charge_not_refundable' } } });
    expect((await chargeRows(chargeKey))[0].status).toBe('declined');
  });

  test('GET /charges/:key returns the row, 404 when absent', async () => {
    const key = newKey('pay/with slash');
    const paid = await charge(key);
    const res = await fetch(`${provider.url}/charges/${encodeURIComponent(key)}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ idempotency_key: key, id: paid.body.id, status: 'succeeded', amount_minor: 4200 });

    const missing = await fetch(`${provider.url}/charges/${encodeURIComponent(newKey('nope'))}`);
    expect(missing.status).toBe(404);
  });

  test('drop fault: the charge commits, the client sees a network error, and a retry replays it', async () => {
    const key = newKey('drop');
    await addFault(provider.url, { kind: 'drop', keyPrefix: 'drop-', path: '/charges', times: 1 });

    await expect(charge(key)).rejects.toThrow();
    const committed = await chargeRows(key);
    expect(committed).toHaveLength(1);
    expect(committed[0].status).toBe('succeeded');

    const retry = await charge(key);
    expect(retry.status).toBe(200);
    expect(retry.replayed).toBe(true);
    expect(retry.body.id).toBe(committed[0].id);
    expect(await chargeRows(key)).toHaveLength(1);
  });

  test('error fault: 503 without touching the database, consumed after `times`', async () => {
    const key = newKey('flaky');
    await addFault(provider.url, { kind: 'error', keyPrefix: 'flaky-', times: 1 });

    const failed = await charge(key);
    expect(failed).toMatchObject({ status: 503, body: { error: { type: 'unavailable' } } });
    expect(await chargeRows(key)).toHaveLength(0);

    const list = (await (await fetch(`${provider.url}/__faults`)).json()) as { faults: unknown[] };
    expect(list.faults).toEqual([expect.objectContaining({ kind: 'error', remaining: 0 })]);

    const next = await charge(key);
    expect(next.status).toBe(200);
    expect(next.replayed).toBe(false);
    expect(await chargeRows(key)).toHaveLength(1);
  });

  test('fault rules only match their key prefix and path', async () => {
    await addFault(provider.url, { kind: 'error', keyPrefix: 'only-this-', path: '/charges' });
    const other = await charge(newKey('other'));
    expect(other.status).toBe(200);
    expect((await refund(newKey('only-this'), other.body.id)).status).toBe(200);
    expect((await charge(newKey('only-this'))).status).toBe(503);
  });

  test('decline fault declines and stores a charge that would otherwise succeed', async () => {
    const key = newKey('dec');
    await addFault(provider.url, { kind: 'decline', keyPrefix: 'dec-', times: 1 });
    const first = await charge(key);
    expect(first.status).toBe(402);
    expect(await charge(key)).toEqual({ ...first, replayed: true });
    expect((await chargeRows(key))[0].status).toBe('declined');
  });

  test('latency fault delays the response but still handles it', async () => {
    const key = newKey('slow');
    await addFault(provider.url, { kind: 'latency', keyPrefix: 'slow-', latency_ms: 300, times: 1 });
    const started = Date.now();
    const answer = await charge(key);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(answer.status).toBe(200);
    expect(await chargeRows(key)).toHaveLength(1);
  });

  test.each([
    ['missing amount', { currency: 'USD', source: 'tok_visa' }],
    ['zero amount', { amount_minor: 0, currency: 'USD', source: 'tok_visa' }],
    ['fractional amount', { amount_minor: 10.5, currency: 'USD', source: 'tok_visa' }],
    ['lowercase currency', { amount_minor: 100, currency: 'usd', source: 'tok_visa' }],
    ['missing source', { amount_minor: 100, currency: 'USD' }],
    ['not an object', [1, 2, 3]],
  ])('invalid charge body (%s) → 400 and no row', async (_name, body) => {
    const key = newKey('bad');
    const answer = await post(provider.url, '/charges', body, key);
    expect(answer.status).toBe(400);
    expect(answer.body.error.type).toBe('invalid_request');
    expect(await chargeRows(key)).toHaveLength(0);
  });

  test.each([
    ['the payment provider', () => provider.url, '/charges'],
    ['the carrier', () => carrier.url, '/shipments'],
  ])('%s refuses a body not declared JSON (415), as a real one does, and writes nothing', async (_name, url, path) => {
    const key = newKey('untyped');
    for (const headers of [{}, { 'content-type': 'text/plain' }, { 'content-type': 'application/jsonp' }] as Record<string, string>[]) {
      const res = await fetch(`${url()}${path}`, {
        method: 'POST',
        headers: { ...headers, 'idempotency-key': key },
        body: JSON.stringify(path === '/charges' ? { amount_minor: 100, currency: 'USD', source: 'tok_visa' } : shipmentBody),
      });
      expect(res.status).toBe(415);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^Content-Type must be application\/json/);
    }
    expect(await chargeRows(key)).toHaveLength(0);
    expect(await shipmentRows(key)).toHaveLength(0);
  });

  test('malformed JSON → 400, oversized body → 413, no row', async () => {
    const key = newKey('bad');
    const malformed = await fetch(`${provider.url}/charges`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: '{"amount_minor":',
    });
    expect(malformed.status).toBe(400);

    const huge = await post(provider.url, '/charges', {
      amount_minor: 100,
      currency: 'USD',
      source: 'tok_visa',
      description: 'x'.repeat(70 * 1024),
    }, key);
    expect(huge.status).toBe(413);
    expect(await chargeRows(key)).toHaveLength(0);
  });

  test.each([
    ['missing', undefined],
    ['empty', ''],
    ['too long', 'k'.repeat(256)],
  ])('%s Idempotency-Key → 400', async (_name, key) => {
    const before = await db.query('SELECT count(*)::int AS n FROM provider_charges');
    const answer = await post(provider.url, '/charges', { amount_minor: 100, currency: 'USD', source: 'tok_visa' }, key);
    expect(answer.status).toBe(400);
    expect(answer.body.error.type).toBe('invalid_request');
    const refundAnswer = await post(provider.url, '/refunds', { charge: 'ch_x' }, key);
    expect(refundAnswer.status).toBe(400);
    const after = await db.query('SELECT count(*)::int AS n FROM provider_charges');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});

describe('carrier', () => {
  const createShipment = (key: string, body: Record<string, unknown> = {}) =>
    post(carrier.url, '/shipments', { ...shipmentBody, ...body }, key);
  const voidShipment = (key: string, shipmentId: string) => post(carrier.url, '/shipments/void', { shipment: shipmentId }, key);

  test('create returns 201 and a replay returns the same shipment', async () => {
    const key = newKey('ship');
    const first = await createShipment(key);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ status: 'created' });
    expect(first.body.id).toMatch(/^shp_/);
    expect(first.body.tracking_number).toMatch(/^TRK\d+$/);

    const again = await createShipment(key);
    expect(again).toEqual({ status: 201, body: first.body, replayed: true });

    const rows = await shipmentRows(key);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: first.body.id, tracking_number: first.body.tracking_number, status: 'created' });
  });

  test('concurrent creates with one key produce one shipment', async () => {
    const key = newKey('ship');
    const answers = await Promise.all(Array.from({ length: 10 }, () => createShipment(key)));
    expect(answers.filter((a) => a.status !== 201 && a.status !== 409)).toEqual([]);
    expect(new Set(answers.filter((a) => a.status === 201).map((a) => a.body.id)).size).toBe(1);
    expect(await shipmentRows(key)).toHaveLength(1);
  });

  test('same key with a different body → 422, row unchanged', async () => {
    const key = newKey('ship');
    await createShipment(key);
    const before = await shipmentRows(key);
    const mismatch = await createShipment(key, { items: [{ sku: 'SKU-1', quantity: 3 }] });
    expect(mismatch.status).toBe(422);
    expect(mismatch.body.error.type).toBe('idempotency_mismatch');
    expect(await shipmentRows(key)).toEqual(before);
  });

  test('void marks a shipment voided and replays on the same void key; a second void under another key is refused', async () => {
    const key = newKey('ship');
    const created = await createShipment(key);
    const voidKey = newKey('void');

    const first = await voidShipment(voidKey, created.body.id);
    expect(first).toEqual({ status: 200, body: { status: 'voided', shipment_id: created.body.id }, replayed: false });
    expect(await voidShipment(voidKey, created.body.id)).toEqual({ ...first, replayed: true });
    expect(await voidShipment(newKey('void'), created.body.id)).toMatchObject({
      status: 400,
      body: { error: { type: 'shipment_already_voided' } },
    });

    expect((await shipmentRows(key))[0].status).toBe('voided');
    const { rows } = await db.query('SELECT * FROM carrier_voids WHERE shipment_id = $1', [created.body.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0].idempotency_key).toBe(voidKey);
  });

  test('a void of a label that does not exist is 404 and leaves nothing; a later create under any key goes through', async () => {
    const voidKey = newKey('void');
    expect(await voidShipment(voidKey, 'shp_never_made')).toMatchObject({ status: 404, body: { error: { type: 'resource_missing' } } });
    expect((await db.query('SELECT 1 FROM carrier_voids WHERE idempotency_key = $1', [voidKey])).rowCount).toBe(0);
    const key = newKey('ship');
    expect((await createShipment(key)).status).toBe(201);
  });

  test('GET /shipments/:key returns the row, 404 when absent', async () => {
    const key = newKey('ship');
    const created = await createShipment(key);
    const res = await fetch(`${carrier.url}/shipments/${encodeURIComponent(key)}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ idempotency_key: key, id: created.body.id, status: 'created' });
    expect((await fetch(`${carrier.url}/shipments/${newKey('nope')}`)).status).toBe(404);
  });

  test('drop fault on create: committed, client errors, retry replays', async () => {
    const key = newKey('cdrop');
    await addFault(carrier.url, { kind: 'drop', keyPrefix: 'cdrop-', times: 1 });
    await expect(createShipment(key)).rejects.toThrow();
    const committed = await shipmentRows(key);
    expect(committed).toHaveLength(1);
    const retry = await createShipment(key);
    expect(retry).toMatchObject({ status: 201, replayed: true, body: { id: committed[0].id } });
  });

  test('error fault → 503 and no row; decline faults are refused by the carrier', async () => {
    const key = newKey('cerr');
    await addFault(carrier.url, { kind: 'error', keyPrefix: 'cerr-', status: 502, times: 1 });
    expect((await createShipment(key)).status).toBe(502);
    expect(await shipmentRows(key)).toHaveLength(0);

    const res = await fetch(`${carrier.url}/__faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'decline' }),
    });
    expect(res.status).toBe(400);
  });

  test.each([
    ['missing order_id', { address: shipmentBody.address, items: shipmentBody.items }],
    ['address not an object', { ...shipmentBody, address: 'somewhere' }],
    ['no items', { ...shipmentBody, items: [] }],
    ['bad quantity', { ...shipmentBody, items: [{ sku: 'A', quantity: 0 }] }],
  ])('invalid shipment body (%s) → 400 and no row', async (_name, body) => {
    const key = newKey('badship');
    const answer = await post(carrier.url, '/shipments', body, key);
    expect(answer.status).toBe(400);
    expect(answer.body.error.type).toBe('invalid_request');
    expect(await shipmentRows(key)).toHaveLength(0);
  });

  test('missing Idempotency-Key on create and void → 400, no row', async () => {
    const before = await db.query('SELECT count(*)::int AS n FROM carrier_shipments');
    expect((await post(carrier.url, '/shipments', shipmentBody)).status).toBe(400);
    expect((await post(carrier.url, '/shipments/void', { shipment: 'shp_x' })).status).toBe(400);
    const after = await db.query('SELECT count(*)::int AS n FROM carrier_shipments');
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});
