/**
 * The saga activities against real PostgreSQL and the real payment provider and
 * carrier HTTP services: every assertion reads rows, never logs or mocks.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanKind, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { CancelledFailure } from '@temporalio/common';
import { createActivities, type SagaActivities } from '../../activities';
import { assessRisk, FRAUD_AMOUNT_LIMIT_MINOR } from '../../activities/fraud';
import { carrierClient, paymentProviderClient } from '../../activities/providers';
import { reconcileOrder } from '../../dev/services/reconcile';
import { createLedger, forwardEffect, LedgerFailure } from '../../packages/toolkit/src/ledger/ledger';
import { FailureType } from '../../workflows/order/failures';
import { Step } from '../../workflows/order/steps';
import type { Address, Money, OrderInput, OrderItem } from '../../workflows/order/types';
import { activityEnvFor, runActivity } from '../helpers/activity-env';
import { addFault, createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';

let ctx: TestContext;
let acts: SagaActivities;

beforeAll(async () => {
  ctx = await createTestContext('acts');
});

// Built for each test, not once: a defect planted in the factories must reach the test that runs.
beforeEach(() => {
  acts = createActivities(ctx.deps);
});

afterEach(async () => {
  // A test that failed half-way must not leave a fault behind for the next one.
  await fetch(`${ctx.payment.url}/__faults`, { method: 'DELETE' });
  await fetch(`${ctx.carrier.url}/__faults`, { method: 'DELETE' });
});

afterAll(async () => {
  await ctx?.close();
});

// ---------------------------------------------------------------------------
// Helpers

/** Runs one activity the way a worker would: inside the Activity Context of its input's saga. */
const run = runActivity;

interface Saga {
  orderId: string;
  wfId: string;
  key(step: string): string;
  undo(step: string): { key: string; forwardKey: string; orderId: string };
}

function newSaga(): Saga {
  const orderId = uniqueId('o');
  const wfId = `order-${orderId}`;
  return {
    orderId,
    wfId,
    key: (step) => `${wfId}/${step}`,
    undo: (step) => ({ key: `${wfId}/${step}/undo`, forwardKey: `${wfId}/${step}`, orderId }),
  };
}

const address: Address = { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' };
const money: Money = { amountMinor: 4_990, currency: 'EUR' };

function orderInput(s: Saga, items: OrderItem[], overrides: Partial<OrderInput> = {}): OrderInput {
  return {
    orderId: s.orderId,
    customerId: 'cust-1',
    items,
    amount: money,
    paymentToken: 'tok_visa',
    shippingAddress: address,
    ...overrides,
  };
}

const chargeInput = (s: Saga, overrides: { amount?: Money; paymentToken?: string } = {}) => ({
  key: s.key(Step.chargePayment),
  orderId: s.orderId,
  amount: overrides.amount ?? money,
  paymentToken: overrides.paymentToken ?? 'tok_visa',
});

const shipmentInput = (s: Saga, items: OrderItem[]) => ({
  key: s.key(Step.createShipment),
  orderId: s.orderId,
  address,
  items,
});

interface Caught {
  type?: unknown;
  nonRetryable?: unknown;
  message?: unknown;
  details?: unknown;
}

/** Awaits a promise that must reject and returns what it rejected with. */
async function rejection(p: Promise<unknown>): Promise<Caught> {
  let settled: { ok: true; value: unknown } | { ok: false; err: unknown };
  try {
    settled = { ok: true, value: await p };
  } catch (err) {
    settled = { ok: false, err };
  }
  if (settled.ok) throw new Error(`expected a rejection, got ${JSON.stringify(settled.value)}`);
  expect(settled.err).toBeInstanceOf(Error);
  return settled.err as Caught;
}

async function expectFailure(p: Promise<unknown>, type: string, nonRetryable: boolean): Promise<Caught> {
  const err = await rejection(p);
  expect({ type: err.type, nonRetryable: err.nonRetryable }).toEqual({ type, nonRetryable });
  return err;
}

async function one<T>(sql: string, params: unknown[]): Promise<T | undefined> {
  const res = await ctx.db.query(sql, params);
  if (res.rows.length > 1) throw new Error(`expected at most one row for ${sql}`);
  return res.rows[0] as T | undefined;
}

async function count(sql: string, params: unknown[]): Promise<number> {
  const res = await ctx.db.query<{ n: string }>(sql, params);
  return Number(res.rows[0]?.n ?? NaN);
}

const ledgerRow = (key: string) =>
  one<{ state: string; fingerprint: string | null; result: unknown; error: { type: string } | null }>(
    'SELECT state, fingerprint, result, error FROM step_ledger WHERE key = $1',
    [key],
  );
const ledgerState = async (key: string) => (await ledgerRow(key))?.state;
const ledgerCount = (wfId: string) => count('SELECT count(*) AS n FROM step_ledger WHERE workflow_id = $1', [wfId]);

const stock = (sku: string) =>
  one<{ on_hand: number; reserved: number }>('SELECT on_hand, reserved FROM inventory WHERE sku = $1', [sku]);
const reservations = async (orderId: string) =>
  (
    await ctx.db.query<{ sku: string; quantity: number; status: string }>(
      'SELECT sku, quantity, status FROM reservations WHERE order_id = $1 ORDER BY sku',
      [orderId],
    )
  ).rows;

const payment = (key: string) =>
  one<{ status: string; provider_charge_id: string | null; amount_minor: string }>(
    'SELECT status, provider_charge_id, amount_minor FROM payments WHERE idempotency_key = $1',
    [key],
  );
const providerCharges = async (key: string) =>
  (
    await ctx.db.query<{ id: string | null; status: string; amount_minor: string | null }>(
      'SELECT id, status, amount_minor FROM provider_charges WHERE idempotency_key = $1',
      [key],
    )
  ).rows;
const paymentsOfOrder = (orderId: string) =>
  count('SELECT count(*) AS n FROM payments WHERE order_id = $1', [orderId]);

const shipment = (key: string) =>
  one<{ status: string; carrier_shipment_id: string | null; tracking_number: string | null }>(
    'SELECT status, carrier_shipment_id, tracking_number FROM shipments WHERE idempotency_key = $1',
    [key],
  );
const carrierShipments = async (key: string) =>
  (
    await ctx.db.query<{ id: string | null; status: string; tracking_number: string | null }>(
      'SELECT id, status, tracking_number FROM carrier_shipments WHERE idempotency_key = $1',
      [key],
    )
  ).rows;

async function newSku(onHand: number): Promise<string> {
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: onHand });
  return sku;
}

async function waitFor(what: string, pred: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** True once the service has handed out every use of its fault rules (the request is inside it). */
async function faultsConsumed(serviceUrl: string): Promise<boolean> {
  const res = await fetch(`${serviceUrl}/__faults`);
  const body = (await res.json()) as { faults: { remaining: number | null }[] };
  return body.faults.length > 0 && body.faults.every((f) => f.remaining === 0);
}

/**
 * Runs an attempt again, as Temporal would, while it fails retryably: a service answers 409 to a
 * request whose key another request is still using. Gives up after 50 attempts.
 */
async function untilSettled<T>(attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if ((err as Caught).nonRetryable !== false || i >= 50) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

// ---------------------------------------------------------------------------
// 1. A duplicate execution applies once

describe('a duplicate execution applies once', () => {
  test('recordOrder twice: one order, its items once, the same result', async () => {
    const s = newSaga();
    const o = orderInput(s, [
      { sku: 'sku-a', quantity: 2 },
      { sku: 'sku-b', quantity: 1 },
    ]);
    const first = await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: o });
    const second = await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: o });

    expect(first).toEqual({ orderId: s.orderId });
    expect(second).toEqual(first);
    expect(await count('SELECT count(*) AS n FROM orders WHERE id = $1', [s.orderId])).toBe(1);
    expect(await one('SELECT status, amount_minor, currency FROM orders WHERE id = $1', [s.orderId])).toEqual({
      status: 'pending',
      amount_minor: '4990',
      currency: 'EUR',
    });
    expect(await count('SELECT count(*) AS n FROM order_items WHERE order_id = $1', [s.orderId])).toBe(2);
    expect(await ledgerRow(s.key(Step.recordOrder))).toMatchObject({ state: 'completed', result: first });
  });

  test('reserveInventory twice: stock is held once', async () => {
    const s = newSaga();
    const sku = await newSku(5);
    const input = { key: s.key(Step.reserveInventory), orderId: s.orderId, items: [{ sku, quantity: 2 }] };

    const first = await run(acts.reserveInventory, input);
    const second = await run(acts.reserveInventory, input);

    expect(first).toEqual({ reserved: [{ sku, quantity: 2 }] });
    expect(second).toEqual(first);
    expect(await stock(sku)).toEqual({ on_hand: 5, reserved: 2 });
    expect(await reservations(s.orderId)).toEqual([{ sku, quantity: 2, status: 'held' }]);
    expect(await ledgerState(input.key)).toBe('completed');
  });

  test('chargePayment twice: one provider charge, the same chargeId', async () => {
    const s = newSaga();
    const input = chargeInput(s);

    const first = await run(acts.chargePayment, input);
    const second = await run(acts.chargePayment, input);

    expect(first.chargeId).toMatch(/^ch_/);
    expect(second).toEqual(first);
    expect(await providerCharges(input.key)).toEqual([{ id: first.chargeId, status: 'succeeded', amount_minor: '4990' }]);
    expect(await payment(input.key)).toEqual({ status: 'captured', provider_charge_id: first.chargeId, amount_minor: '4990' });
    expect(await paymentsOfOrder(s.orderId)).toBe(1);
    expect(await ledgerRow(input.key)).toMatchObject({ state: 'completed', result: first });
  });

  test('createShipment twice: one carrier shipment, the same tracking number', async () => {
    const s = newSaga();
    const input = shipmentInput(s, [{ sku: 'sku-a', quantity: 1 }]);

    const first = await run(acts.createShipment, input);
    const second = await run(acts.createShipment, input);

    expect(first.shipmentId).toMatch(/^shp_/);
    expect(first.trackingNumber).toMatch(/^TRK\d{12}$/);
    expect(second).toEqual(first);
    expect(await carrierShipments(input.key)).toEqual([
      { id: first.shipmentId, status: 'created', tracking_number: first.trackingNumber },
    ]);
    expect(await shipment(input.key)).toEqual({
      status: 'created',
      carrier_shipment_id: first.shipmentId,
      tracking_number: first.trackingNumber,
    });
    expect(await ledgerState(input.key)).toBe('completed');
  });

  test('completeOrder twice: stock leaves the shelf once', async () => {
    const s = newSaga();
    const sku = await newSku(5);
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku, quantity: 2 }]) });
    await run(acts.reserveInventory, { key: s.key(Step.reserveInventory), orderId: s.orderId, items: [{ sku, quantity: 2 }] });

    const input = { key: s.key(Step.completeOrder), orderId: s.orderId };
    expect(await run(acts.completeOrder, input)).toEqual({ completed: true });
    expect(await run(acts.completeOrder, input)).toEqual({ completed: true });

    expect(await stock(sku)).toEqual({ on_hand: 3, reserved: 0 });
    expect(await reservations(s.orderId)).toEqual([{ sku, quantity: 2, status: 'consumed' }]);
    expect(await one('SELECT status FROM orders WHERE id = $1', [s.orderId])).toEqual({ status: 'completed' });
  });
});

// ---------------------------------------------------------------------------
// 2. Concurrent executions of one key apply once

describe('concurrent executions of one key apply once', () => {
  const N = 10;

  test(`${N} concurrent reserveInventory: one hold, everyone gets the same result`, async () => {
    const s = newSaga();
    const sku = await newSku(100);
    const input = { key: s.key(Step.reserveInventory), orderId: s.orderId, items: [{ sku, quantity: 3 }] };

    const results = await Promise.all(Array.from({ length: N }, () => run(acts.reserveInventory, input)));

    for (const r of results) expect(r).toEqual({ reserved: [{ sku, quantity: 3 }] });
    expect(await stock(sku)).toEqual({ on_hand: 100, reserved: 3 });
    expect(await reservations(s.orderId)).toEqual([{ sku, quantity: 3, status: 'held' }]);
    expect(await ledgerCount(s.wfId)).toBe(1);
    expect(await ledgerState(input.key)).toBe('completed');
  });

  // The ledger records a local step after its effect: a duplicate runs the effect, finds the key
  // taken, rolls back and replays. These twins fail in their effect first (no stock left, the
  // fraud check's row exists), and must still get the recorded answer, never the effect's error.
  test(`${N} concurrent reserveInventory of the last units: the twins find no stock, and still replay the hold`, async () => {
    const s = newSaga();
    const sku = await newSku(3);
    const input = { key: s.key(Step.reserveInventory), orderId: s.orderId, items: [{ sku, quantity: 3 }] };

    const results = await Promise.allSettled(Array.from({ length: N }, () => run(acts.reserveInventory, input)));

    expect(results.map((r) => r.status)).toEqual(Array(N).fill('fulfilled'));
    for (const r of results) expect((r as PromiseFulfilledResult<unknown>).value).toEqual({ reserved: [{ sku, quantity: 3 }] });
    expect(await stock(sku)).toEqual({ on_hand: 3, reserved: 3 });
    expect(await reservations(s.orderId)).toEqual([{ sku, quantity: 3, status: 'held' }]);
    expect(await ledgerRow(input.key)).toMatchObject({ state: 'completed', error: null });
  });

  test(`${N} concurrent checkFraud and recordOrder: one row each, one answer`, async () => {
    const s = newSaga();
    const order = orderInput(s, [{ sku: 'sku-a', quantity: 1 }]);
    const fraud = { key: s.key(Step.fraudCheck), orderId: s.orderId, amount: money, paymentToken: 'tok_visa' };
    const [records, checks] = await Promise.all([
      Promise.all(Array.from({ length: N }, () => run(acts.recordOrder, { key: s.key(Step.recordOrder), order }))),
      Promise.all(Array.from({ length: N }, () => run(acts.checkFraud, fraud))),
    ]);

    expect(new Set(records.map((r) => JSON.stringify(r)))).toEqual(new Set([JSON.stringify({ orderId: s.orderId })]));
    expect(new Set(checks.map((r) => JSON.stringify(r))).size).toBe(1);
    expect(await count('SELECT count(*) AS n FROM orders WHERE id = $1', [s.orderId])).toBe(1);
    expect(await count('SELECT count(*) AS n FROM fraud_checks WHERE order_id = $1', [s.orderId])).toBe(1);
    expect(await ledgerRow(fraud.key)).toMatchObject({ state: 'completed', result: checks[0] });
  });

  test(`${N} concurrent chargePayment: one provider charge, everyone gets the same chargeId`, async () => {
    const s = newSaga();
    const input = chargeInput(s);

    const results = await Promise.all(Array.from({ length: N }, () => untilSettled(() => run(acts.chargePayment, input))));

    const ids = new Set(results.map((r) => r.chargeId));
    expect(ids.size).toBe(1);
    const [chargeId] = [...ids];
    expect(await providerCharges(input.key)).toEqual([{ id: chargeId, status: 'succeeded', amount_minor: '4990' }]);
    expect(await payment(input.key)).toEqual({ status: 'captured', provider_charge_id: chargeId, amount_minor: '4990' });
    expect(await paymentsOfOrder(s.orderId)).toBe(1);
    expect(await ledgerRow(input.key)).toMatchObject({ state: 'completed', result: { chargeId } });
  });

  test(`${N} concurrent createShipment: one carrier shipment`, async () => {
    const s = newSaga();
    const input = shipmentInput(s, [{ sku: 'sku-a', quantity: 1 }]);

    const results = await Promise.all(Array.from({ length: N }, () => untilSettled(() => run(acts.createShipment, input))));

    const first = results[0]!;
    for (const r of results) expect(r).toEqual(first);
    expect(await carrierShipments(input.key)).toEqual([
      { id: first.shipmentId, status: 'created', tracking_number: first.trackingNumber },
    ]);
    expect(await shipment(input.key)).toMatchObject({ status: 'created', carrier_shipment_id: first.shipmentId });
  });
});

// ---------------------------------------------------------------------------
// 3. The same key with another input is a conflict

describe('fingerprint conflict', () => {
  test('reserveInventory: same key, other items → IdempotencyConflict, nothing changes', async () => {
    const s = newSaga();
    const sku = await newSku(10);
    const key = s.key(Step.reserveInventory);
    await run(acts.reserveInventory, { key, orderId: s.orderId, items: [{ sku, quantity: 2 }] });

    await expectFailure(
      run(acts.reserveInventory, { key, orderId: s.orderId, items: [{ sku, quantity: 5 }] }),
      LedgerFailure.IdempotencyConflict,
      true,
    );

    expect(await stock(sku)).toEqual({ on_hand: 10, reserved: 2 });
    expect(await reservations(s.orderId)).toEqual([{ sku, quantity: 2, status: 'held' }]);
    // The conflict is not recorded over the original answer: a true duplicate still replays it.
    expect(await ledgerRow(key)).toMatchObject({ state: 'completed', error: null });
    await expect(run(acts.reserveInventory, { key, orderId: s.orderId, items: [{ sku, quantity: 2 }] })).resolves.toEqual({
      reserved: [{ sku, quantity: 2 }],
    });
    expect(await stock(sku)).toEqual({ on_hand: 10, reserved: 2 });
  });

  test('recordOrder: same key, another amount → IdempotencyConflict, the order is unchanged', async () => {
    const s = newSaga();
    const key = s.key(Step.recordOrder);
    await run(acts.recordOrder, { key, order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });

    await expectFailure(
      run(acts.recordOrder, {
        key,
        order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }], { amount: { amountMinor: 1, currency: 'EUR' } }),
      }),
      LedgerFailure.IdempotencyConflict,
      true,
    );
    expect(await one('SELECT amount_minor FROM orders WHERE id = $1', [s.orderId])).toEqual({ amount_minor: '4990' });
    expect(await ledgerState(key)).toBe('completed');
  });

  test('chargePayment: same key, another amount → IdempotencyConflict, no second charge', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    const { chargeId } = await run(acts.chargePayment, input);

    await expectFailure(
      run(acts.chargePayment, { ...input, amount: { amountMinor: 99_999, currency: 'EUR' } }),
      LedgerFailure.IdempotencyConflict,
      true,
    );

    expect(await providerCharges(input.key)).toEqual([{ id: chargeId, status: 'succeeded', amount_minor: '4990' }]);
    expect(await payment(input.key)).toEqual({ status: 'captured', provider_charge_id: chargeId, amount_minor: '4990' });
    expect(await ledgerRow(input.key)).toMatchObject({ state: 'completed', result: { chargeId } });
  });

  test('chargePayment: conflict while the first attempt is still pending → IdempotencyConflict, provider not called', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    // First attempt commits, answer dropped: the ledger row stays 'pending'.
    await addFault(ctx.payment.url, { kind: 'drop', path: '/charges', keyPrefix: input.key, times: 1 });
    await expectFailure(run(acts.chargePayment, input), FailureType.ProviderUnavailable, false);
    expect(await ledgerState(input.key)).toBe('pending');
    const before = await providerCharges(input.key);
    expect(before).toHaveLength(1);

    // Were the attempt to reach the provider, this 5xx would turn it into ProviderUnavailable.
    await addFault(ctx.payment.url, { kind: 'error', keyPrefix: input.key, times: 1 });
    await expectFailure(
      run(acts.chargePayment, { ...input, paymentToken: 'tok_other' }),
      LedgerFailure.IdempotencyConflict,
      true,
    );
    expect(await faultsConsumed(ctx.payment.url)).toBe(false);
    expect(await providerCharges(input.key)).toEqual(before);
    expect(await payment(input.key)).toMatchObject({ status: 'pending', provider_charge_id: null });
    expect(await ledgerState(input.key)).toBe('pending');
  });

  test('refundPayment: same undo key, another input → IdempotencyConflict', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await run(acts.chargePayment, input);
    const undo = s.undo(Step.chargePayment);
    await run(acts.refundPayment, undo);

    await expectFailure(
      run(acts.refundPayment, { ...undo, orderId: 'another-order' }),
      LedgerFailure.IdempotencyConflict,
      true,
    );
    expect(await providerCharges(input.key)).toMatchObject([{ status: 'refunded' }]);
    expect(await payment(input.key)).toMatchObject({ status: 'refunded' });
  });
});

// ---------------------------------------------------------------------------
// 4. A business failure is recorded and replayed

describe('business failures are recorded and replayed', () => {
  test('reserveInventory out of stock → OutOfStock; the duplicate fails the same even after restock', async () => {
    const s = newSaga();
    const plenty = await newSku(10);
    const scarce = await newSku(1);
    const input = {
      key: s.key(Step.reserveInventory),
      orderId: s.orderId,
      items: [
        { sku: plenty, quantity: 2 },
        { sku: scarce, quantity: 3 },
      ],
    };

    const err = await expectFailure(run(acts.reserveInventory, input), FailureType.OutOfStock, true);
    // Only the line that is short is named, in the message and in the details the order's reason is built from.
    expect(err.message).toBe(`out of stock: ${scarce}`);
    expect((err as { details?: unknown }).details).toEqual([{ skus: [scarce] }]);

    // All or nothing: the in-stock line's hold rolled back with the rest.
    expect(await stock(plenty)).toEqual({ on_hand: 10, reserved: 0 });
    expect(await stock(scarce)).toEqual({ on_hand: 1, reserved: 0 });
    expect(await reservations(s.orderId)).toEqual([]);
    const row = await ledgerRow(input.key);
    expect(row).toMatchObject({ state: 'failed', error: { type: FailureType.OutOfStock } });

    await seedInventory(ctx.db, { [scarce]: 50 });
    await expectFailure(run(acts.reserveInventory, input), FailureType.OutOfStock, true);
    expect(await stock(plenty)).toEqual({ on_hand: 10, reserved: 0 });
    expect(await stock(scarce)).toEqual({ on_hand: 50, reserved: 0 });
    expect(await reservations(s.orderId)).toEqual([]);
    expect(await ledgerState(input.key)).toBe('failed');
  });

  test('reserveInventory short of several lines names each of them', async () => {
    const s = newSaga();
    const [a, b] = [await newSku(1), await newSku(1)];
    const input = { key: s.key(Step.reserveInventory), orderId: s.orderId, items: [{ sku: a, quantity: 2 }, { sku: b, quantity: 2 }] };
    const err = await expectFailure(run(acts.reserveInventory, input), FailureType.OutOfStock, true);
    expect(err.message).toBe(`out of stock: ${a}, ${b}`);
    expect((err as { details?: unknown }).details).toEqual([{ skus: [a, b] }]);
  });

  test('chargePayment with tok_decline → PaymentDeclined, payment declined, replayed without a second call', async () => {
    const s = newSaga();
    const input = chargeInput(s, { paymentToken: 'tok_decline' });

    await expectFailure(run(acts.chargePayment, input), FailureType.PaymentDeclined, true);
    expect(await payment(input.key)).toMatchObject({ status: 'declined', provider_charge_id: null });
    expect(await providerCharges(input.key)).toMatchObject([{ status: 'declined' }]);
    // The provider's answer is kept with the failure: why the card was declined is the provider's word.
    expect(await ledgerRow(input.key)).toMatchObject({
      state: 'failed',
      error: { type: FailureType.PaymentDeclined, details: [{ error: { code: 'card_declined' }, charge: { status: 'declined' } }] },
    });

    // Were the duplicate to reach the provider, this 5xx would turn it into ProviderUnavailable.
    await addFault(ctx.payment.url, { kind: 'error', keyPrefix: input.key, times: 1 });
    await expectFailure(run(acts.chargePayment, input), FailureType.PaymentDeclined, true);
    expect(await faultsConsumed(ctx.payment.url)).toBe(false);
    expect(await payment(input.key)).toMatchObject({ status: 'declined' });
    expect(await providerCharges(input.key)).toHaveLength(1);
    expect(await paymentsOfOrder(s.orderId)).toBe(1);
  });
});

// ---------------------------------------------------------------------------
// 5. A forward attempt after its compensation applies nothing

describe('a forward attempt after its compensation applies nothing', () => {
  test('releaseInventory before reserveInventory → StepCancelled, no hold', async () => {
    const s = newSaga();
    const sku = await newSku(5);
    const undo = s.undo(Step.reserveInventory);

    expect(await run(acts.releaseInventory, undo)).toEqual({ released: 0 });
    expect(await ledgerState(undo.forwardKey)).toBe('cancelled');
    expect(await ledgerState(undo.key)).toBe('completed');

    await expectFailure(
      run(acts.reserveInventory, { key: undo.forwardKey, orderId: s.orderId, items: [{ sku, quantity: 2 }] }),
      LedgerFailure.StepCancelled,
      true,
    );
    expect(await stock(sku)).toEqual({ on_hand: 5, reserved: 0 });
    expect(await reservations(s.orderId)).toEqual([]);
    // The tombstone is not overwritten by a recorded failure.
    expect(await ledgerRow(undo.forwardKey)).toMatchObject({ state: 'cancelled', error: null });
  });

  test('refundPayment before chargePayment → StepCancelled, no money taken', async () => {
    const s = newSaga();
    const undo = s.undo(Step.chargePayment);

    expect(await run(acts.refundPayment, undo)).toEqual({ status: 'nothing_to_refund' });
    expect(await ledgerState(undo.forwardKey)).toBe('cancelled');
    // The provider was never called: it keeps nothing for this key, so only the ledger stands in the way.
    expect(await providerCharges(undo.forwardKey)).toEqual([]);

    await expectFailure(run(acts.chargePayment, chargeInput(s)), LedgerFailure.StepCancelled, true);
    expect(await providerCharges(undo.forwardKey)).toEqual([]);
    expect(await payment(undo.forwardKey)).toBeUndefined();
    expect(await ledgerState(undo.forwardKey)).toBe('cancelled');
    expect((await reconcileOrder(ctx.db, s.orderId)).netChargedMinor).toBe(0);
  });

  test('voidShipment before createShipment → StepCancelled, no label', async () => {
    const s = newSaga();
    const undo = s.undo(Step.createShipment);

    expect(await run(acts.voidShipment, undo)).toEqual({ status: 'nothing_to_void' });
    expect(await carrierShipments(undo.forwardKey)).toEqual([]);

    await expectFailure(
      run(acts.createShipment, shipmentInput(s, [{ sku: 'sku-a', quantity: 1 }])),
      LedgerFailure.StepCancelled,
      true,
    );
    expect(await carrierShipments(undo.forwardKey)).toEqual([]);
    expect(await shipment(undo.forwardKey)).toBeUndefined();
    expect(await ledgerState(undo.forwardKey)).toBe('cancelled');
  });

  test('cancelOrder after a failed recordOrder leaves an order it did not record untouched', async () => {
    const s = newSaga();
    const foreign = orderInput(s, [{ sku: 'sku-a', quantity: 1 }]);
    await run(acts.recordOrder, { key: `order-other-${s.orderId}/${Step.recordOrder}`, order: foreign });
    await expectFailure(
      run(acts.recordOrder, { key: s.key(Step.recordOrder), order: { ...foreign, customerId: 'someone-else' } }),
      FailureType.InvalidInput,
      true,
    );
    const undo = { ...s.undo(Step.recordOrder), status: 'failed' as const, reason: 'record failed' };
    expect(await ledgerRow(s.key(Step.recordOrder))).toMatchObject({
      state: 'failed',
      error: { type: FailureType.InvalidInput, message: `order ${s.orderId} already exists with other contents` },
    });
    expect(await run(acts.cancelOrder, undo)).toEqual({ changed: false });
    expect(await one<{ status: string }>('SELECT status FROM orders WHERE id = $1', [s.orderId])).toEqual({ status: 'pending' });
  });

  test('cancelOrder for a saga that stopped waiting for its charge gives the reason the charge recorded, not the timeout', async () => {
    const s = newSaga();
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });
    // The charge was declined and recorded, but its answer never reached the saga: the last attempt timed out.
    await expectFailure(run(acts.chargePayment, chargeInput(s, { paymentToken: 'tok_decline' })), FailureType.PaymentDeclined, true);
    const timedOut = { cancelled: false, failure: { type: 'Unknown', message: 'activity Heartbeat timeout' } };
    expect(await run(acts.refundPayment, { ...s.undo(Step.chargePayment), cause: timedOut })).toEqual({ status: 'nothing_to_refund' });
    expect(await run(acts.cancelOrder, { ...s.undo(Step.recordOrder), cause: timedOut })).toEqual({ changed: true });
    expect(await one('SELECT status, failure_reason FROM orders WHERE id = $1', [s.orderId])).toEqual({
      status: 'failed',
      failure_reason: 'PaymentDeclined: card declined',
    });
  });

  test('cancelOrder for a cancelled saga says cancelled, whatever a step had recorded', async () => {
    const s = newSaga();
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });
    await expectFailure(run(acts.chargePayment, chargeInput(s, { paymentToken: 'tok_decline' })), FailureType.PaymentDeclined, true);
    const cancel = { cancelled: true, failure: { type: 'SagaCancelled', message: 'customer changed their mind' } };
    expect(await run(acts.cancelOrder, { ...s.undo(Step.recordOrder), cause: cancel })).toEqual({ changed: true });
    expect(await one('SELECT status, failure_reason FROM orders WHERE id = $1', [s.orderId])).toEqual({
      status: 'cancelled',
      failure_reason: 'SagaCancelled: customer changed their mind',
    });
  });

  test('recordCompensationFailure writes each failed step on its own order once, then the order closes failed with them', async () => {
    const s = newSaga();
    const other = newSaga();
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });
    const refused = { type: 'InvalidInput', message: 'refund refused' };
    const record = (key: string, failure = refused, orderId = s.orderId) => run(acts.recordCompensationFailure, { key, orderId, failure });

    expect(await record(s.undo(Step.chargePayment).key)).toEqual({ recorded: true });
    // Again (a retried attempt, a task run again, another message): nothing more.
    expect(await record(s.undo(Step.chargePayment).key, { type: 'Other', message: 'said otherwise' })).toEqual({ recorded: false });
    expect(await record(s.undo(Step.createShipment).key, { type: 'InvalidInput', message: 'bad\u0000byte' })).toEqual({ recorded: true });
    // Another saga's key never writes on this order; a forward key is refused.
    expect(await record(other.undo(Step.chargePayment).key)).toEqual({ recorded: false });
    await expect(record(s.key(Step.chargePayment))).rejects.toThrow(`${s.key(Step.chargePayment)} is not a compensation's key`);
    await expectFailure(record(s.key(Step.chargePayment)), FailureType.InvalidInput, true);

    const row = await one<{ compensation_failures: unknown }>('SELECT compensation_failures FROM orders WHERE id = $1', [s.orderId]);
    expect(row?.compensation_failures).toEqual([
      { step: Step.chargePayment, type: 'InvalidInput', message: 'refund refused', at: expect.any(String) },
      { step: Step.createShipment, type: 'InvalidInput', message: 'bad\ufffdbyte', at: expect.any(String) },
    ]);
    const failed = { cancelled: false, failure: { type: 'ShipmentFailed', message: 'no' } };
    expect(await run(acts.cancelOrder, { ...s.undo(Step.recordOrder), cause: failed })).toEqual({ changed: true });
    const { rows } = await ctx.db.query<{ type: string }>('SELECT type FROM order_events WHERE order_id = $1 ORDER BY position', [s.orderId]);
    expect(rows.map((r) => r.type)).toEqual(['created', 'compensation_failed', 'compensation_failed', 'failed']);
  });

  test('cancelOrder before recordOrder → StepCancelled, no order row', async () => {
    const s = newSaga();
    const undo = { ...s.undo(Step.recordOrder), status: 'cancelled' as const, reason: 'customer changed their mind' };

    expect(await run(acts.cancelOrder, undo)).toEqual({ changed: false });
    await expectFailure(
      run(acts.recordOrder, { key: undo.forwardKey, order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) }),
      LedgerFailure.StepCancelled,
      true,
    );
    expect(await count('SELECT count(*) AS n FROM orders WHERE id = $1', [s.orderId])).toBe(0);
    expect(await count('SELECT count(*) AS n FROM order_items WHERE order_id = $1', [s.orderId])).toBe(0);
    expect(await ledgerState(undo.forwardKey)).toBe('cancelled');
  });
});

// ---------------------------------------------------------------------------
// 6. A compensation after a completed forward step undoes it exactly once

describe('compensation after a completed forward step undoes it exactly once', () => {
  test('reserve, then release twice: stock back, reservation released once', async () => {
    const s = newSaga();
    const sku = await newSku(5);
    const other = newSaga(); // another order holding the same SKU must keep its hold
    await run(acts.reserveInventory, { key: other.key(Step.reserveInventory), orderId: other.orderId, items: [{ sku, quantity: 1 }] });
    await run(acts.reserveInventory, { key: s.key(Step.reserveInventory), orderId: s.orderId, items: [{ sku, quantity: 2 }] });
    expect(await stock(sku)).toEqual({ on_hand: 5, reserved: 3 });

    const undo = s.undo(Step.reserveInventory);
    const first = await run(acts.releaseInventory, undo);
    const second = await run(acts.releaseInventory, undo);

    expect(first).toEqual({ released: 1 });
    expect(second).toEqual(first);
    expect(await stock(sku)).toEqual({ on_hand: 5, reserved: 1 });
    expect(await reservations(s.orderId)).toEqual([{ sku, quantity: 2, status: 'released' }]);
    expect(await reservations(other.orderId)).toEqual([{ sku, quantity: 1, status: 'held' }]);
    expect(await ledgerState(undo.forwardKey)).toBe('cancelled');
    expect(await ledgerState(undo.key)).toBe('completed');

    // A late duplicate of the forward step (a workflow task retried after it was lost) gets the
    // answer the first attempt got, and cannot re-hold the stock.
    expect(await run(acts.reserveInventory, { key: undo.forwardKey, orderId: s.orderId, items: [{ sku, quantity: 2 }] })).toEqual({
      reserved: [{ sku, quantity: 2 }],
    });
    expect(await stock(sku)).toEqual({ on_hand: 5, reserved: 1 });
    expect(await reservations(s.orderId)).toEqual([{ sku, quantity: 2, status: 'released' }]);
    expect(await ledgerState(undo.forwardKey)).toBe('cancelled');
  });

  test('charge, then refund twice: provider charge refunded once, payment refunded', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    const { chargeId } = await run(acts.chargePayment, input);
    const undo = s.undo(Step.chargePayment);

    const first = await run(acts.refundPayment, undo);
    const second = await run(acts.refundPayment, undo);

    expect(first).toEqual({ status: 'refunded' });
    expect(second).toEqual(first);
    expect(await providerCharges(input.key)).toEqual([{ id: chargeId, status: 'refunded', amount_minor: '4990' }]);
    expect(await count('SELECT count(*) AS n FROM provider_refunds WHERE charge_id = $1', [chargeId])).toBe(1);
    expect(await payment(input.key)).toEqual({ status: 'refunded', provider_charge_id: chargeId, amount_minor: '4990' });
    expect(await ledgerState(input.key)).toBe('cancelled');
    expect(await ledgerState(undo.key)).toBe('completed');

    // A late duplicate gets the charge it made, and charges nothing.
    expect(await run(acts.chargePayment, input)).toEqual({ chargeId });
    expect(await providerCharges(input.key)).toEqual([{ id: chargeId, status: 'refunded', amount_minor: '4990' }]);
    expect(await payment(input.key)).toMatchObject({ status: 'refunded' });
  });

  test('ship, then void twice: carrier shipment voided once', async () => {
    const s = newSaga();
    const input = shipmentInput(s, [{ sku: 'sku-a', quantity: 1 }]);
    const { shipmentId } = await run(acts.createShipment, input);
    const undo = s.undo(Step.createShipment);

    expect(await run(acts.voidShipment, undo)).toEqual({ status: 'voided' });
    expect(await run(acts.voidShipment, undo)).toEqual({ status: 'voided' });

    expect(await carrierShipments(input.key)).toMatchObject([{ id: shipmentId, status: 'voided' }]);
    expect(await count('SELECT count(*) AS n FROM carrier_voids WHERE shipment_id = $1', [shipmentId])).toBe(1);
    expect(await shipment(input.key)).toMatchObject({ status: 'voided', carrier_shipment_id: shipmentId });
    expect(await ledgerState(input.key)).toBe('cancelled');
  });

  test('record, then cancelOrder twice: the order is cancelled once', async () => {
    const s = newSaga();
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });
    const undo = { ...s.undo(Step.recordOrder), status: 'failed' as const, reason: 'payment declined' };

    expect(await run(acts.cancelOrder, undo)).toEqual({ changed: true });
    expect(await run(acts.cancelOrder, undo)).toEqual({ changed: true }); // replayed, not re-applied
    expect(await one('SELECT status, failure_reason FROM orders WHERE id = $1', [s.orderId])).toEqual({
      status: 'failed',
      failure_reason: 'payment declined',
    });
    expect(await ledgerState(undo.forwardKey)).toBe('cancelled');
  });
});

// ---------------------------------------------------------------------------
// 7–8. Provider faults

describe('provider faults', () => {
  test('commit, then drop the response: the retry charges once', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'drop', path: '/charges', keyPrefix: input.key, times: 1 });

    await expectFailure(run(acts.chargePayment, input), FailureType.ProviderUnavailable, false);
    // The provider committed the charge; we never learned its id.
    const committed = await providerCharges(input.key);
    expect(committed).toMatchObject([{ status: 'succeeded' }]);
    expect(await ledgerState(input.key)).toBe('pending');
    expect(await payment(input.key)).toMatchObject({ status: 'pending', provider_charge_id: null });

    const { chargeId } = await run(acts.chargePayment, input);
    expect(chargeId).toBe(committed[0]!.id);
    expect(await providerCharges(input.key)).toEqual([{ id: chargeId, status: 'succeeded', amount_minor: '4990' }]);
    expect(await payment(input.key)).toEqual({ status: 'captured', provider_charge_id: chargeId, amount_minor: '4990' });
    expect(await paymentsOfOrder(s.orderId)).toBe(1);
    expect(await ledgerRow(input.key)).toMatchObject({ state: 'completed', result: { chargeId } });
  });

  test('5xx: retryable ProviderUnavailable, nothing charged; the retry succeeds', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'error', keyPrefix: input.key, times: 1 });

    await expectFailure(run(acts.chargePayment, input), FailureType.ProviderUnavailable, false);
    expect(await faultsConsumed(ctx.payment.url)).toBe(true);
    expect(await providerCharges(input.key)).toEqual([]);
    expect(await ledgerState(input.key)).toBe('pending');
    expect(await payment(input.key)).toMatchObject({ status: 'pending' });

    const { chargeId } = await run(acts.chargePayment, input);
    expect(await providerCharges(input.key)).toEqual([{ id: chargeId, status: 'succeeded', amount_minor: '4990' }]);
    expect(await payment(input.key)).toMatchObject({ status: 'captured', provider_charge_id: chargeId });
    expect(await ledgerState(input.key)).toBe('completed');
  });

  test('carrier 5xx on createShipment: retryable, no label; the retry creates one', async () => {
    const s = newSaga();
    const input = shipmentInput(s, [{ sku: 'sku-a', quantity: 1 }]);
    await addFault(ctx.carrier.url, { kind: 'error', keyPrefix: input.key, times: 1 });

    await expectFailure(run(acts.createShipment, input), FailureType.ProviderUnavailable, false);
    expect(await carrierShipments(input.key)).toEqual([]);
    expect(await shipment(input.key)).toMatchObject({ status: 'pending' });

    const { shipmentId } = await run(acts.createShipment, input);
    expect(await carrierShipments(input.key)).toMatchObject([{ id: shipmentId, status: 'created' }]);
    expect(await shipment(input.key)).toMatchObject({ status: 'created', carrier_shipment_id: shipmentId });
  });

  test('refund 5xx: retryable; the retry refunds once', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    const { chargeId } = await run(acts.chargePayment, input);
    const undo = s.undo(Step.chargePayment);
    await addFault(ctx.payment.url, { kind: 'error', path: '/refunds', times: 1 });

    await expectFailure(run(acts.refundPayment, undo), FailureType.ProviderUnavailable, false);
    // The local tombstone is already down, so no late forward attempt can confirm.
    expect(await ledgerState(input.key)).toBe('cancelled');
    expect(await providerCharges(input.key)).toMatchObject([{ status: 'succeeded' }]);

    expect(await run(acts.refundPayment, undo)).toEqual({ status: 'refunded' });
    expect(await providerCharges(input.key)).toEqual([{ id: chargeId, status: 'refunded', amount_minor: '4990' }]);
    expect(await payment(input.key)).toMatchObject({ status: 'refunded' });
    expect(await ledgerState(undo.key)).toBe('completed');
  });
});

// ---------------------------------------------------------------------------
// 8b. What a real provider would not forgive: it keeps nothing for a key it never saw,
// refunds a charge once, and never lets a refund stand in for a charge.

describe('compensations a real provider would accept', () => {
  const refundsOf = (chargeId: string) => count('SELECT count(*) AS n FROM provider_refunds WHERE charge_id = $1', [chargeId]);

  test('a refund whose answer was lost is retried under the same key: one refund, the same answer', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    const { chargeId } = await run(acts.chargePayment, input);
    const undo = s.undo(Step.chargePayment);
    await addFault(ctx.payment.url, { kind: 'drop', path: '/refunds', times: 1 });

    await expectFailure(run(acts.refundPayment, undo), FailureType.ProviderUnavailable, false);
    // The provider refunded; the answer never came back.
    expect(await providerCharges(input.key)).toMatchObject([{ status: 'refunded' }]);
    expect(await ledgerState(undo.key)).toBe('pending');

    // A second refund of a refunded charge is an error at a real provider: the retry must replay the first.
    expect(await run(acts.refundPayment, undo)).toEqual({ status: 'refunded' });
    expect(await refundsOf(chargeId)).toBe(1);
    expect(await payment(input.key)).toMatchObject({ status: 'refunded' });
    expect(await ledgerState(undo.key)).toBe('completed');
  });

  test('a charge whose answer was lost is refunded by learning it again under its key; the refund retried after its own lost answer replays', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'drop', path: '/charges', keyPrefix: input.key, times: 1 });
    await expectFailure(run(acts.chargePayment, input), FailureType.ProviderUnavailable, false);
    const [charged] = await providerCharges(input.key);
    expect(charged).toMatchObject({ status: 'succeeded' });
    expect(await ledgerState(input.key)).toBe('pending');

    const undo = s.undo(Step.chargePayment);
    await addFault(ctx.payment.url, { kind: 'drop', path: '/refunds', times: 1 });
    await expectFailure(run(acts.refundPayment, undo), FailureType.ProviderUnavailable, false);
    // The retry is told the same forward outcome (pending, from the tombstone's memory) and sends the same requests.
    expect(await run(acts.refundPayment, undo)).toEqual({ status: 'refunded' });
    expect(await providerCharges(input.key)).toEqual([{ id: charged!.id, status: 'refunded', amount_minor: '4990' }]);
    expect(await refundsOf(charged!.id!)).toBe(1);
    expect(await payment(input.key)).toMatchObject({ status: 'refunded' });
    // The tombstone no longer keeps the request (and its card token) once the refund is done.
    expect((await one<{ input: unknown }>('SELECT input FROM step_ledger WHERE key = $1', [input.key]))?.input).toBeNull();
    expect((await reconcileOrder(ctx.db, s.orderId)).netChargedMinor).toBe(0);
  });

  test('a pending charge that the provider declines when asked again: nothing to refund, the payment voided', async () => {
    const s = newSaga();
    const input = chargeInput(s, { paymentToken: 'tok_decline' });
    await addFault(ctx.payment.url, { kind: 'error', path: '/charges', keyPrefix: input.key, times: 1 });
    await expectFailure(run(acts.chargePayment, input), FailureType.ProviderUnavailable, false);
    expect(await providerCharges(input.key)).toEqual([]);

    expect(await run(acts.refundPayment, s.undo(Step.chargePayment))).toEqual({ status: 'nothing_to_refund' });
    expect(await providerCharges(input.key)).toMatchObject([{ status: 'declined' }]);
    expect(await payment(input.key)).toMatchObject({ status: 'voided' });
  });

  test('a completed step\'s input is not kept: the ledger holds the card token only while the call is pending', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'error', path: '/charges', keyPrefix: input.key, times: 1 });
    await expectFailure(run(acts.chargePayment, input), FailureType.ProviderUnavailable, false);
    expect((await one<{ input: unknown }>('SELECT input FROM step_ledger WHERE key = $1', [input.key]))?.input).toEqual(input);
    await run(acts.chargePayment, input);
    expect((await one<{ input: unknown }>('SELECT input FROM step_ledger WHERE key = $1', [input.key]))?.input).toBeNull();
  });

  test('an undo retried with another input while its first attempt is still pending → IdempotencyConflict, nothing sent', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    const { chargeId } = await run(acts.chargePayment, input);
    const undo = s.undo(Step.chargePayment);
    await addFault(ctx.payment.url, { kind: 'error', path: '/refunds', times: 1 });
    await expectFailure(run(acts.refundPayment, undo), FailureType.ProviderUnavailable, false);
    expect(await ledgerState(undo.key)).toBe('pending');

    // Were this attempt to reach the provider, the 5xx would make it ProviderUnavailable.
    await addFault(ctx.payment.url, { kind: 'error', path: '/refunds', times: 1 });
    await expectFailure(run(acts.refundPayment, { ...undo, orderId: 'another-order' }), LedgerFailure.IdempotencyConflict, true);
    expect(await faultsConsumed(ctx.payment.url)).toBe(false);
    expect(await providerCharges(input.key)).toMatchObject([{ status: 'succeeded' }]);
    expect(await refundsOf(chargeId)).toBe(0);
    expect(await ledgerState(undo.key)).toBe('pending');
  });

  test('a pending step recorded without its request (an older ledger row) → ForwardUnknown for a person, the provider untouched', async () => {
    const s = newSaga();
    const key = s.key(Step.chargePayment);
    await ctx.db.query(
      `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state) VALUES ($1, $2, $3, 'fp', 'pending')`,
      [key, s.wfId, Step.chargePayment],
    );
    const err = await expectFailure(run(acts.refundPayment, s.undo(Step.chargePayment)), LedgerFailure.ForwardUnknown, true);
    expect(String(err.message)).toContain(`cannot tell whether ${key} took effect`);
    expect(await providerCharges(key)).toEqual([]);
    expect(await ledgerState(key)).toBe('cancelled');
  });

  test('a pending shipment is voided by learning its label again under its key', async () => {
    const s = newSaga();
    const input = shipmentInput(s, [{ sku: 'sku-a', quantity: 1 }]);
    await addFault(ctx.carrier.url, { kind: 'drop', path: '/shipments', keyPrefix: input.key, times: 1 });
    await expectFailure(run(acts.createShipment, input), FailureType.ProviderUnavailable, false);
    const [label] = await carrierShipments(input.key);
    expect(label).toMatchObject({ status: 'created' });

    expect(await run(acts.voidShipment, s.undo(Step.createShipment))).toEqual({ status: 'voided' });
    expect(await carrierShipments(input.key)).toEqual([{ ...label, status: 'voided' }]);
    expect(await count('SELECT count(*) AS n FROM carrier_voids WHERE shipment_id = $1', [label!.id])).toBe(1);
    expect(await shipment(input.key)).toMatchObject({ status: 'voided' });
    expect((await reconcileOrder(ctx.db, s.orderId)).activeShipments).toBe(0);
  });
});

// ---------------------------------------------------------------------------
// 8c. The ledger's external steps as a saga of one's own writes them (sagaflow/ledger)

describe('external steps on the ledger, as the toolkit is used', () => {
  const counter = uniqueId('confirms').replace(/-/g, '_');
  beforeAll(async () => {
    await ctx.db.query(`CREATE TABLE ${counter} (key text PRIMARY KEY, n int NOT NULL)`);
  });
  const bump = (key: string) =>
    `INSERT INTO ${counter} (key, n) VALUES ('${key}', 1) ON CONFLICT (key) DO UPDATE SET n = ${counter}.n + 1`;
  const confirms = async (key: string) => (await one<{ n: number }>(`SELECT n FROM ${counter} WHERE key = $1`, [key]))?.n ?? 0;

  test('forwardEffect: null when the step never ran or failed, its result when it completed, the repeated answer when pending', async () => {
    const at = (forward: Parameters<typeof forwardEffect>[0]['forward']) => ({ key: 'wf/ping/undo', forwardKey: 'wf/ping', forward });
    const repeat = async (input: unknown) => ({ repeatedWith: input });
    expect(await forwardEffect(at({ state: 'absent' }), repeat)).toBeNull();
    expect(await forwardEffect(at({ state: 'failed', error: { type: 'Declined', message: 'no' } }), repeat)).toBeNull();
    expect(await forwardEffect(at({ state: 'completed', result: { id: 'x' } }), repeat)).toEqual({ id: 'x' });
    expect(await forwardEffect(at({ state: 'pending', input: { n: 1 } }), repeat)).toEqual({ repeatedWith: { n: 1 } });
    await expect(forwardEffect(at({ state: 'pending', input: null }), repeat)).rejects.toMatchObject({ type: LedgerFailure.ForwardUnknown });
    await expect(forwardEffect(at({ state: 'cancelled' }), repeat)).rejects.toMatchObject({ type: LedgerFailure.ForwardUnknown });
  });

  test('a step and its undo with neither prepare nor confirm', async () => {
    const ping = createLedger(ctx.db).step('ping');
    const wf = uniqueId('wf');
    expect(await ping.external(`${wf}/ping`, { n: 1 }, { call: async () => ({ ok: true, result: { pong: 1 } }) })).toEqual({ pong: 1 });
    expect(await ping.externalUndo(`${wf}/ping/undo`, { n: 1 }, { call: async ({ forward }) => ({ undid: forward }) })).toEqual({
      undid: { state: 'completed', result: { pong: 1 } },
    });
    expect(await ledgerState(`${wf}/ping`)).toBe('cancelled');
  });

  test('two attempts of one undo racing: both may call the service, its confirm runs once', async () => {
    const ping = createLedger(ctx.db).step('ping');
    const wf = uniqueId('wf');
    await ping.external(`${wf}/ping`, {}, { call: async () => ({ ok: true, result: 'made' }) });
    // Each call waits (up to 2 s) for the other to start, so both are in flight at once.
    let release!: () => void;
    const gate = Promise.race([new Promise<void>((r) => (release = r)), new Promise<void>((r) => setTimeout(r, 2000))]);
    let calls = 0;
    const undo = () =>
      ping.externalUndo(`${wf}/ping/undo`, {}, {
        async call() {
          calls += 1;
          if (calls === 2) release();
          await gate;
          return 'undone';
        },
        confirm: async (tx) => void (await tx.query(bump(`${wf}/undo`))),
      });
    expect(await Promise.all([undo(), undo()])).toEqual(['undone', 'undone']);
    expect(calls).toBe(2);
    expect(await confirms(`${wf}/undo`)).toBe(1);
  });

  test('two attempts of one step racing: its confirm runs once', async () => {
    const ping = createLedger(ctx.db).step('ping');
    const wf = uniqueId('wf');
    let release!: () => void;
    const gate = Promise.race([new Promise<void>((r) => (release = r)), new Promise<void>((r) => setTimeout(r, 2000))]);
    let calls = 0;
    const step = () =>
      ping.external(`${wf}/ping`, {}, {
        async call() {
          calls += 1;
          if (calls === 2) release();
          await gate;
          return { ok: true as const, result: 'made' };
        },
        confirm: async (tx) => void (await tx.query(bump(`${wf}/step`))),
      });
    expect(await Promise.all([step(), step()])).toEqual(['made', 'made']);
    expect(calls).toBe(2);
    expect(await confirms(`${wf}/step`)).toBe(1);
  });

  test('a row purged while its call is in flight fails the attempt loudly, not with a wrong answer', async () => {
    const ping = createLedger(ctx.db).step('ping');
    const key = `${uniqueId('wf')}/ping`;
    const attempt = ping.external(key, {}, {
      async call() {
        await ctx.db.query('DELETE FROM step_ledger WHERE key = $1', [key]);
        return { ok: true, result: 'made' };
      },
    });
    await expect(attempt).rejects.toThrow(`ledger row ${key} vanished`);
  });

  test('a completed refund retried answers from the ledger: the provider is not asked again', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await run(acts.chargePayment, input);
    const undo = s.undo(Step.chargePayment);
    expect(await run(acts.refundPayment, undo)).toEqual({ status: 'refunded' });
    await addFault(ctx.payment.url, { kind: 'error', path: '/refunds', times: 1 });
    await addFault(ctx.payment.url, { kind: 'error', path: '/charges', times: 1 });
    expect(await run(acts.refundPayment, undo)).toEqual({ status: 'refunded' });
    expect(await faultsConsumed(ctx.payment.url)).toBe(false);
  });

  test('a declined charge is not refunded: the provider is not asked', async () => {
    const s = newSaga();
    await expectFailure(run(acts.chargePayment, chargeInput(s, { paymentToken: 'tok_decline' })), FailureType.PaymentDeclined, true);
    await addFault(ctx.payment.url, { kind: 'error', times: 2 });
    expect(await run(acts.refundPayment, s.undo(Step.chargePayment))).toEqual({ status: 'nothing_to_refund' });
    expect(await faultsConsumed(ctx.payment.url)).toBe(false);
    expect(await payment(s.key(Step.chargePayment))).toMatchObject({ status: 'declined' });
  });

  test('a tombstone left before tombstones remembered what they replaced → ForwardUnknown, the provider untouched', async () => {
    const s = newSaga();
    const key = s.key(Step.chargePayment);
    // As a compensation before migration 008 left it: the forward step had run (a fingerprint), nothing says how.
    await ctx.db.query(
      `INSERT INTO step_ledger (key, workflow_id, step, fingerprint, state) VALUES ($1, $2, $3, 'fp', 'cancelled')`,
      [key, s.wfId, Step.chargePayment],
    );
    await expectFailure(run(acts.refundPayment, s.undo(Step.chargePayment)), LedgerFailure.ForwardUnknown, true);
    expect(await providerCharges(key)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// 9. Zombies: a forward attempt still in flight when its compensation runs

describe('a zombie forward attempt applies nothing net', () => {
  test('slow charge, refund completes meanwhile: the late charge is refused and nothing is captured', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 1500, path: '/charges', keyPrefix: input.key, times: 1 });

    const slow = run(acts.chargePayment, input);
    const slowOutcome = rejection(slow); // attach the handler now; it settles later
    // The charge request is inside the provider, sleeping before it touches its books.
    await waitFor('the charge to reach the provider', () => faultsConsumed(ctx.payment.url));
    expect(await ledgerState(input.key)).toBe('pending');

    const undo = s.undo(Step.chargePayment);
    // The charge is pending: the refund sends the same charge request under its key to learn what the
    // provider did (here it does it now, ahead of the sleeping request), then refunds that charge.
    expect(await run(acts.refundPayment, undo)).toEqual({ status: 'refunded' });
    expect(await ledgerState(input.key)).toBe('cancelled');

    // The slow request wakes, is answered with the charge the refund made, and must not record it.
    const err = await slowOutcome;
    expect({ type: err.type, nonRetryable: err.nonRetryable }).toEqual({ type: LedgerFailure.StepCancelled, nonRetryable: true });

    const charges = await providerCharges(input.key);
    expect(charges).toMatchObject([{ status: 'refunded', amount_minor: '4990' }]);
    expect(await count('SELECT count(*) AS n FROM provider_refunds WHERE charge_id = $1', [charges[0]!.id])).toBe(1);
    expect(await payment(input.key)).toMatchObject({ status: 'refunded' });
    expect(await ledgerRow(input.key)).toMatchObject({ state: 'cancelled', result: null });
    expect(await ledgerState(undo.key)).toBe('completed');
    expect((await reconcileOrder(ctx.db, s.orderId)).netChargedMinor).toBe(0);

    // A further retry of the zombie also applies nothing.
    await expectFailure(run(acts.chargePayment, input), LedgerFailure.StepCancelled, true);
    expect(await providerCharges(input.key)).toEqual(charges);
  });

  test('charge committed but its answer lost, refund, then the retry: money comes back and stays back', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'drop', path: '/charges', keyPrefix: input.key, times: 1 });
    await expectFailure(run(acts.chargePayment, input), FailureType.ProviderUnavailable, false);
    const [committed] = await providerCharges(input.key);
    expect(committed).toMatchObject({ status: 'succeeded' });

    expect(await run(acts.refundPayment, s.undo(Step.chargePayment))).toEqual({ status: 'refunded' });
    expect(await providerCharges(input.key)).toMatchObject([{ id: committed!.id, status: 'refunded' }]);
    expect(await payment(input.key)).toMatchObject({ status: 'refunded' });

    await expectFailure(run(acts.chargePayment, input), LedgerFailure.StepCancelled, true);
    expect(await providerCharges(input.key)).toMatchObject([{ id: committed!.id, status: 'refunded' }]);
    expect(await payment(input.key)).toMatchObject({ status: 'refunded' });
    expect((await reconcileOrder(ctx.db, s.orderId)).netChargedMinor).toBe(0);
  });

  test('slow createShipment, void completes meanwhile: no active label', async () => {
    const s = newSaga();
    const input = shipmentInput(s, [{ sku: 'sku-a', quantity: 1 }]);
    await addFault(ctx.carrier.url, { kind: 'latency', latency_ms: 1500, path: '/shipments', keyPrefix: input.key, times: 1 });

    const slowOutcome = rejection(run(acts.createShipment, input));
    await waitFor('the shipment to reach the carrier', () => faultsConsumed(ctx.carrier.url));

    const undo = s.undo(Step.createShipment);
    expect(await run(acts.voidShipment, undo)).toEqual({ status: 'voided' });

    const err = await slowOutcome;
    expect({ type: err.type, nonRetryable: err.nonRetryable }).toEqual({ type: LedgerFailure.StepCancelled, nonRetryable: true });
    expect(await carrierShipments(input.key)).toMatchObject([{ status: 'voided' }]);
    expect(await ledgerState(input.key)).toBe('cancelled');
    expect(await shipment(input.key)).toMatchObject({ status: 'voided' });
    expect((await reconcileOrder(ctx.db, s.orderId)).activeShipments).toBe(0);
  });

  test('reserveInventory racing releaseInventory: the stock ends up unheld whichever wins', async () => {
    const s = newSaga();
    const sku = await newSku(5);
    const forward = { key: s.key(Step.reserveInventory), orderId: s.orderId, items: [{ sku, quantity: 2 }] };
    const undo = s.undo(Step.reserveInventory);

    const [fwd, rel] = await Promise.allSettled([run(acts.reserveInventory, forward), run(acts.releaseInventory, undo)]);

    expect(rel.status).toBe('fulfilled');
    if (fwd.status === 'rejected') expect((fwd.reason as Caught).type).toBe(LedgerFailure.StepCancelled);
    expect(await stock(sku)).toEqual({ on_hand: 5, reserved: 0 });
    const held = (await reservations(s.orderId)).filter((r) => r.status === 'held');
    expect(held).toEqual([]);
    expect(await ledgerState(forward.key)).toBe('cancelled');
  });
});

// ---------------------------------------------------------------------------
// 10. Keys must name their step

describe('a key that does not name its step is InvalidStepKey', () => {
  test('reserveInventory with key "x/wrong" → InvalidStepKey, nothing written', async () => {
    const s = newSaga();
    const sku = await newSku(5);
    await expectFailure(
      run(acts.reserveInventory, { key: 'x/wrong', orderId: s.orderId, items: [{ sku, quantity: 1 }] }),
      LedgerFailure.InvalidStepKey,
      true,
    );
    expect(await stock(sku)).toEqual({ on_hand: 5, reserved: 0 });
    expect(await reservations(s.orderId)).toEqual([]);
    expect(await ledgerRow('x/wrong')).toBeUndefined();
  });

  test('another step\'s key, or a bare suffix with no workflow ID → InvalidStepKey', async () => {
    const s = newSaga();
    await expectFailure(run(acts.chargePayment, { ...chargeInput(s), key: s.key(Step.createShipment) }), LedgerFailure.InvalidStepKey, true);
    await expectFailure(run(acts.chargePayment, { ...chargeInput(s), key: `/${Step.chargePayment}` }), LedgerFailure.InvalidStepKey, true);
    await expectFailure(
      run(acts.createShipment, { ...shipmentInput(s, [{ sku: 'sku-a', quantity: 1 }]), key: s.key(Step.chargePayment) }),
      LedgerFailure.InvalidStepKey,
      true,
    );
    expect(await providerCharges(s.key(Step.createShipment))).toEqual([]);
    expect(await providerCharges(`/${Step.chargePayment}`)).toEqual([]);
    expect(await paymentsOfOrder(s.orderId)).toBe(0);
    expect(await ledgerCount(s.wfId)).toBe(0);
  });

  test('an undo called with a forward key → InvalidStepKey', async () => {
    const s = newSaga();
    await expectFailure(
      run(acts.releaseInventory, { ...s.undo(Step.reserveInventory), key: s.key(Step.reserveInventory) }),
      LedgerFailure.InvalidStepKey,
      true,
    );
    await expectFailure(
      run(acts.refundPayment, { ...s.undo(Step.chargePayment), key: s.key(Step.chargePayment) }),
      LedgerFailure.InvalidStepKey,
      true,
    );
    expect(await ledgerCount(s.wfId)).toBe(0);
  });

  // The forward key is parsed from the undo key: an undo can only ever reach its own saga's step.
  test('releaseInventory with another saga\'s forward key smuggled into its input undoes only its own step', async () => {
    const victim = newSaga();
    const sku = await newSku(5);
    await run(acts.reserveInventory, { key: victim.key(Step.reserveInventory), orderId: victim.orderId, items: [{ sku, quantity: 2 }] });
    const s = newSaga();

    await run(acts.releaseInventory, { ...s.undo(Step.reserveInventory), forwardKey: victim.key(Step.reserveInventory) });
    expect(await ledgerState(s.key(Step.reserveInventory))).toBe('cancelled');
    expect(await ledgerState(victim.key(Step.reserveInventory))).toBe('completed');
    expect(await stock(sku)).toEqual({ on_hand: 5, reserved: 2 });
  });

  test('refundPayment with another saga\'s forward key smuggled into its input leaves that charge untouched', async () => {
    const victim = newSaga();
    const victimCharge = chargeInput(victim);
    const { chargeId } = await run(acts.chargePayment, victimCharge);
    const s = newSaga();

    await run(acts.refundPayment, { ...s.undo(Step.chargePayment), forwardKey: victimCharge.key });
    expect(await ledgerState(s.key(Step.chargePayment))).toBe('cancelled');
    expect(await ledgerState(victimCharge.key)).toBe('completed');
    expect(await providerCharges(victimCharge.key)).toEqual([{ id: chargeId, status: 'succeeded', amount_minor: '4990' }]);
    expect(await payment(victimCharge.key)).toMatchObject({ status: 'captured' });
  });

  test('voidShipment with another saga\'s forward key smuggled into its input leaves that label untouched', async () => {
    const victim = newSaga();
    const victimShipment = shipmentInput(victim, [{ sku: 'sku-a', quantity: 1 }]);
    const { shipmentId } = await run(acts.createShipment, victimShipment);
    const s = newSaga();

    await run(acts.voidShipment, { ...s.undo(Step.createShipment), forwardKey: victimShipment.key });
    expect(await ledgerState(s.key(Step.createShipment))).toBe('cancelled');
    expect(await ledgerState(victimShipment.key)).toBe('completed');
    expect(await carrierShipments(victimShipment.key)).toMatchObject([{ id: shipmentId, status: 'created' }]);
    expect(await shipment(victimShipment.key)).toMatchObject({ status: 'created' });
  });
});

// ---------------------------------------------------------------------------
// 9. What a provider may answer, read alike from every service with an Idempotency-Key

describe('what a provider may answer', () => {
  /** A provider of one scripted answer, on real HTTP: what the simulated services never say. */
  async function answering(status: number, body: string): Promise<{ url: string; close(): Promise<void> }> {
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(status, { 'content-type': 'application/json' }).end(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  // The message names the service and the step: it becomes the order's failure reason, which API
  // clients read. The address, and the service's own words, are in the details, for operators.
  test.each([
    [500, false, FailureType.ProviderUnavailable, () => 'payment provider answered 500 to charge-payment', { status: 500 }],
    [409, false, FailureType.ProviderUnavailable, (key: string) => `payment provider is still handling charge-payment under key ${key}`, {}],
    [422, true, LedgerFailure.IdempotencyConflict, (key: string) => `key ${key} reused with another request`, {}],
    [400, true, FailureType.InvalidInput, () => 'payment provider refused charge-payment with 400', { body: { error: { type: 'unavailable', message: 'injected fault' } } }],
  ])('%i → %s %s, with what happened in the message and where in the details; nothing charged', async (status, nonRetryable, type, message, details) => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'error', status, keyPrefix: input.key, times: 1 });
    const err = await expectFailure(run(acts.chargePayment, input), type, nonRetryable);
    expect(err.message).toBe(message(input.key));
    expect(err.message).not.toContain(new URL(ctx.payment.url).host);
    expect(err.details).toEqual([expect.objectContaining({ url: `${ctx.payment.url}/charges`, ...details })]);
    expect(await providerCharges(input.key)).toEqual([]);
  });

  test('no provider listening → retryable ProviderUnavailable naming the provider, the step and the error code; the address only in the details', async () => {
    const gone = await answering(200, '{}');
    await gone.close();
    const offline = createActivities({ ...ctx.deps, paymentProviderUrl: gone.url });
    const s = newSaga();
    const err = await expectFailure(run(offline.chargePayment, chargeInput(s)), FailureType.ProviderUnavailable, false);
    expect(err.message).toBe('payment provider unreachable for charge-payment (ECONNREFUSED)');
    expect(err.details).toEqual([{ url: `${gone.url}/charges`, error: expect.stringContaining('ECONNREFUSED') }]);
    expect(await ledgerState(s.key(Step.chargePayment))).toBe('pending');
  });

  test('a body that is not JSON → retryable ProviderUnavailable', async () => {
    const odd = await answering(200, '<html>maintenance</html>');
    try {
      const s = newSaga();
      const err = await expectFailure(
        run(createActivities({ ...ctx.deps, paymentProviderUrl: odd.url }).chargePayment, chargeInput(s)),
        FailureType.ProviderUnavailable,
        false,
      );
      expect(err.message).toBe('payment provider answered charge-payment with a body that is not JSON');
      expect(err.details).toEqual([{ url: `${odd.url}/charges`, status: 200, body: '<html>maintenance</html>' }]);
    } finally {
      await odd.close();
    }
  });

  test('a refund or a void the service answers with another status (a refund still pending) is an error, never taken as done', async () => {
    const pending = await answering(200, '{"status":"pending"}');
    try {
      // Called outside an activity, as a script would: no heartbeat, the same reading.
      const deps = { paymentProviderUrl: pending.url, carrierUrl: pending.url, providerTimeoutMs: 3000 };
      await expect(paymentProviderClient(deps).refund('wf/charge-payment/undo', 'ch_1')).rejects.toThrow(
        'the provider answered refund wf/charge-payment/undo with status pending',
      );
      await expect(carrierClient(deps).voidLabel('wf/create-shipment/undo', 'shp_1')).rejects.toThrow(
        'the carrier answered void wf/create-shipment/undo with status pending',
      );
    } finally {
      await pending.close();
    }
  });

  test('the provider clients work outside an activity too (a script, a one-off repair), and read a failure the same', async () => {
    const key = `${newSaga().wfId}/${Step.chargePayment}`;
    const outcome = await paymentProviderClient(ctx.deps).charge(key, { amount: money, source: 'tok_visa' });
    expect(outcome).toEqual({ ok: true, result: { chargeId: expect.stringMatching(/^ch_/) } });
    expect(await providerCharges(key)).toMatchObject([{ status: 'succeeded' }]);

    const gone = await answering(200, '{}');
    await gone.close();
    const offline = paymentProviderClient({ ...ctx.deps, paymentProviderUrl: gone.url });
    await expect(offline.charge(key, { amount: money, source: 'tok_visa' })).rejects.toMatchObject({
      type: FailureType.ProviderUnavailable,
      nonRetryable: false,
      message: 'payment provider unreachable for charge-payment (ECONNREFUSED)',
    });
  });

  test('each call is a client span carrying its method, address, step key and answer', async () => {
    const exporter = new InMemorySpanExporter();
    const tracing = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    trace.setGlobalTracerProvider(tracing);
    try {
      const input = chargeInput(newSaga());
      await run(acts.chargePayment, input);
      const spans = exporter.getFinishedSpans().filter((sp) => sp.name === 'POST /charges');
      expect(spans.map((sp) => ({ kind: sp.kind, attributes: sp.attributes }))).toEqual([
        {
          kind: SpanKind.CLIENT,
          attributes: {
            'http.request.method': 'POST',
            'url.full': `${ctx.payment.url}/charges`,
            'sagaflow.idempotency_key': input.key,
            'http.response.status_code': 200,
          },
        },
      ]);
    } finally {
      trace.disable();
      await tracing.shutdown();
    }
  });

  test('a cancelled activity abandons its call at once, as a CancelledFailure, and settles nothing', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 5_000, keyPrefix: input.key, times: 1 });
    const env = activityEnvFor(input);
    const attempt = env.run(acts.chargePayment, input);
    await waitFor('the call to reach the provider', () => faultsConsumed(ctx.payment.url));
    env.cancel();
    const err = await rejection(attempt);
    expect(err).toBeInstanceOf(CancelledFailure);
    // Settled nothing: the ledger still says pending, the payment row too.
    expect(await ledgerState(input.key)).toBe('pending');
    expect(await payment(input.key)).toMatchObject({ status: 'pending', provider_charge_id: null });
  });

  test('a call that takes more than a second heartbeats while it waits, and stops once it has its answer', async () => {
    const s = newSaga();
    const input = chargeInput(s);
    await addFault(ctx.payment.url, { kind: 'latency', latency_ms: 2_300, keyPrefix: input.key, times: 1 });
    const env = activityEnvFor(input);
    let beats = 0;
    env.on('heartbeat', () => {
      beats += 1;
    });
    await env.run(acts.chargePayment, input);
    const during = beats;
    expect(during).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(beats).toBe(during);
  });
});

// ---------------------------------------------------------------------------
// 10. The fraud check: its decision, its row, and its undo

describe('the fraud check', () => {
  const fraudInput = (s: Saga, overrides: { amount?: Money; paymentToken?: string } = {}) => ({
    key: s.key(Step.fraudCheck),
    orderId: s.orderId,
    amount: overrides.amount ?? money,
    paymentToken: overrides.paymentToken ?? 'tok_visa',
  });
  const fraudRows = async (orderId: string) =>
    (await ctx.db.query('SELECT decision, score, reasons, status FROM fraud_checks WHERE order_id = $1', [orderId])).rows;
  const over = { amountMinor: FRAUD_AMOUNT_LIMIT_MINOR + 1, currency: 'EUR' };

  test('the risk score: a base of 10, a stolen card +90, an amount above the limit +60, at most 100', () => {
    expect(assessRisk({ amount: money, paymentToken: 'tok_visa' })).toEqual({ score: 10, reasons: [] });
    expect(assessRisk({ amount: { amountMinor: FRAUD_AMOUNT_LIMIT_MINOR, currency: 'EUR' }, paymentToken: 'tok_visa' })).toEqual({ score: 10, reasons: [] });
    expect(assessRisk({ amount: over, paymentToken: 'tok_visa' })).toEqual({ score: 70, reasons: ['amount above 500000 minor units'] });
    expect(assessRisk({ amount: money, paymentToken: 'tok_fraud' })).toEqual({ score: 100, reasons: ['payment method reported as stolen'] });
    expect(assessRisk({ amount: over, paymentToken: 'tok_fraud' })).toEqual({
      score: 100,
      reasons: ['payment method reported as stolen', 'amount above 500000 minor units'],
    });
  });

  test('an ordinary order is approved: its score returned and an active check recorded', async () => {
    const s = newSaga();
    expect(await run(acts.checkFraud, fraudInput(s))).toEqual({ score: 10 });
    expect(await fraudRows(s.orderId)).toEqual([{ decision: 'approved', score: 10, reasons: [], status: 'active' }]);
  });

  test('a score of 70 (the threshold) → FraudSuspected for good, with score and reasons; no check recorded', async () => {
    const s = newSaga();
    const input = fraudInput(s, { amount: over });
    const err = await expectFailure(run(acts.checkFraud, input), FailureType.FraudSuspected, true);
    expect(err.message).toBe('fraud suspected (score 70): amount above 500000 minor units');
    expect((err as { details?: unknown }).details).toEqual([{ score: 70, reasons: ['amount above 500000 minor units'] }]);
    expect(await fraudRows(s.orderId)).toEqual([]);
    expect(await ledgerRow(input.key)).toMatchObject({ state: 'failed', error: { type: FailureType.FraudSuspected } });
  });

  test('a stolen card → FraudSuspected; with a large amount too, both reasons given', async () => {
    const s = newSaga();
    const err = await expectFailure(run(acts.checkFraud, fraudInput(s, { paymentToken: 'tok_fraud' })), FailureType.FraudSuspected, true);
    expect(err.message).toBe('fraud suspected (score 100): payment method reported as stolen');
    const both = await expectFailure(run(acts.checkFraud, fraudInput(newSaga(), { paymentToken: 'tok_fraud', amount: over })), FailureType.FraudSuspected, true);
    expect(both.message).toBe('fraud suspected (score 100): payment method reported as stolen; amount above 500000 minor units');
  });

  test('its undo voids the check once; an undo before the check voids nothing and stops a late check', async () => {
    const s = newSaga();
    await run(acts.checkFraud, fraudInput(s));
    const undo = s.undo(Step.fraudCheck);
    expect(await run(acts.voidFraudCheck, undo)).toEqual({ voided: true });
    expect(await run(acts.voidFraudCheck, undo)).toEqual({ voided: true });
    expect(await fraudRows(s.orderId)).toEqual([{ decision: 'approved', score: 10, reasons: [], status: 'voided' }]);

    const early = newSaga();
    expect(await run(acts.voidFraudCheck, early.undo(Step.fraudCheck))).toEqual({ voided: false });
    await expectFailure(run(acts.checkFraud, fraudInput(early)), LedgerFailure.StepCancelled, true);
    expect(await fraudRows(early.orderId)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// 11. The order row: who wrote it, and how it is closed

describe('the order row', () => {
  const orderRow = (orderId: string) =>
    one<{ status: string; failure_reason: string | null; workflow_id: string; saga_started: boolean }>(
      'SELECT status, failure_reason, workflow_id, saga_started_at IS NOT NULL AS saga_started FROM orders WHERE id = $1',
      [orderId],
    );

  test('recordOrder writes the order as its saga\'s, already started: the API\'s recovery never starts another saga for it', async () => {
    const s = newSaga();
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });
    expect(await orderRow(s.orderId)).toEqual({ status: 'pending', failure_reason: null, workflow_id: s.wfId, saga_started: true });
  });

  test.each([
    ['cancelled with its reason', { status: 'cancelled' as const, reason: 'customer cancelled' }, { status: 'cancelled', failure_reason: 'customer cancelled' }],
    ['failed, with no reason of its own', {}, { status: 'failed', failure_reason: '' }],
  ])('an undo scheduled before undos carried the cause closes the order as it says: %s', async (_name, given, want) => {
    const s = newSaga();
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });
    expect(await run(acts.cancelOrder, { ...s.undo(Step.recordOrder), ...given })).toEqual({ changed: true });
    expect(await orderRow(s.orderId)).toMatchObject(want);
  });

  test('a failed saga with no business failure recorded: the reason is the cause\'s', async () => {
    const s = newSaga();
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });
    const cause = { cancelled: false, failure: { type: 'Unknown', message: 'activity StartToClose timeout' } };
    expect(await run(acts.cancelOrder, { ...s.undo(Step.recordOrder), cause })).toEqual({ changed: true });
    expect(await orderRow(s.orderId)).toMatchObject({ status: 'failed', failure_reason: 'Unknown: activity StartToClose timeout' });
  });

  test.each([
    ['no message', { type: 'PaymentDeclined' }],
    ['no type', { message: 'card declined' }],
    ['a type that is not text', { type: 7, message: 'card declined' }],
  ])('a failure row written by hand with %s is not taken for the reason', async (_name, error) => {
    const s = newSaga();
    await run(acts.recordOrder, { key: s.key(Step.recordOrder), order: orderInput(s, [{ sku: 'sku-a', quantity: 1 }]) });
    await ctx.db.query(`INSERT INTO step_ledger (key, workflow_id, step, state, error) VALUES ($1, $2, $3, 'failed', $4)`, [
      s.key(Step.chargePayment),
      s.wfId,
      Step.chargePayment,
      JSON.stringify(error),
    ]);
    const cause = { cancelled: false, failure: { type: 'Unknown', message: 'activity StartToClose timeout' } };
    expect(await run(acts.cancelOrder, { ...s.undo(Step.recordOrder), cause })).toEqual({ changed: true });
    expect(await orderRow(s.orderId)).toMatchObject({ status: 'failed', failure_reason: 'Unknown: activity StartToClose timeout' });
  });
});
