import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { inTransaction, type Db } from '../db/pool';
import { claimKey, completeKey, releaseLease } from '@sagaflow/toolkit/edge';
import { fingerprint } from '@sagaflow/toolkit/ledger';
import { findOrder, insertOrder, markSagaStarted, toOrderInput } from '../orders/repository';
import { startOrderSaga } from '../orders/start';
import { orderWorkflowId } from '../../workflows/order/ids';
import type { OrderSagaResult } from '../../workflows/order/types';
import type { CreateOrderRequest } from './schemas';
import { liveSaga, orderView, sagaFromResult, type SagaView } from './views';

export interface CreateOrderDeps {
  db: Db;
  temporal: Client;
  taskQueue: string;
  keyTtlMs: number;
  leaseMs: number;
  searchAttributes?: boolean;
  /** The workflow type sagas start as (SAGAFLOW_ORDER_SAGA_TYPE); the order saga's current one when unset. */
  workflowType?: string;
}

export interface CreateOrderCommand {
  clientId: string;
  idempotencyKey: string;
  /** The body as sent (fingerprinted) and as validated. */
  raw: unknown;
  order: CreateOrderRequest;
  /** How long to wait for the saga to end before answering (0: answer at once). */
  waitMs: number;
  /**
   * When the request arrived (ms since the epoch; now if unset). The wait is bounded from here:
   * time spent queueing for the database or starting the saga comes out of it.
   */
  arrivedAt?: number;
}

/**
 * The end of a wait kept for reading the saga's live state when it has not ended: 1 s, or a
 * fifth of a shorter wait. A status query can take that long when workers are busy.
 */
const liveReadReserve = (waitMs: number) => Math.min(1000, Math.floor(waitMs / 5));
/** The least time a live read gets when the wait is already spent (the database was slow): enough for a describe. */
const LIVE_READ_MIN_MS = 500;

/** What the request comes to; the caller turns it into its protocol's answer. */
export type CreateOrderOutcome =
  | { kind: 'answer'; orderId: string; status: number; body: string; replayed: boolean; healed: boolean }
  | { kind: 'key-reused' }
  | { kind: 'in-flight'; retryAfterSeconds: number }
  | { kind: 'unavailable'; message: string };

/**
 * Creates an order and starts its saga, exactly once per client and key: the
 * key record and the order commit in one transaction, the saga starts under
 * the order's deterministic workflow ID, and the answer is stored so that any
 * retry gets the same bytes. A request that died after its commit is finished
 * by the next retry (or by the recovery job).
 */
export async function createOrder(deps: CreateOrderDeps, cmd: CreateOrderCommand): Promise<CreateOrderOutcome> {
  const { db, temporal } = deps;
  const answerBy = (cmd.arrivedAt ?? Date.now()) + cmd.waitMs;
  const claim = await inTransaction(db, async (tx) => {
    const c = await claimKey(tx, {
      clientId: cmd.clientId,
      key: cmd.idempotencyKey,
      fingerprint: fingerprint(cmd.raw),
      newResourceId: `ord_${randomBytes(10).toString('hex')}`,
      ttlMs: deps.keyTtlMs,
      leaseMs: deps.leaseMs + cmd.waitMs,
    });
    if (c.kind === 'new') {
      const owner = { clientId: cmd.clientId, workflowId: orderWorkflowId(c.resourceId) };
      if (!(await insertOrder(tx, { ...cmd.order, orderId: c.resourceId }, owner))) {
        throw new Error(`fresh order ID ${c.resourceId} already taken`);
      }
    }
    return c;
  });
  switch (claim.kind) {
    case 'mismatch':
      return { kind: 'key-reused' };
    case 'in-flight':
      return { kind: 'in-flight', retryAfterSeconds: claim.retryAfterSeconds };
    case 'replay':
      return { kind: 'answer', orderId: claim.resourceId, status: claim.status, body: claim.body, replayed: true, healed: false };
  }
  // New, or healing a request that died after its commit: starting the saga is idempotent either way.
  const orderId = claim.resourceId;
  const row = await findOrder(db, orderId);
  if (!row) throw new Error(`order ${orderId} missing under its idempotency key`);
  let handle: Awaited<ReturnType<typeof startOrderSaga>>;
  try {
    handle = await startOrderSaga(temporal, toOrderInput(row), deps.taskQueue, { searchAttributes: deps.searchAttributes, workflowType: deps.workflowType });
  } catch (err) {
    await releaseLease(db, cmd.clientId, cmd.idempotencyKey).catch(() => undefined);
    return { kind: 'unavailable', message: `could not start the saga: ${(err as Error).message}` };
  }
  await markSagaStarted(db, orderId);
  // The saga is started: whatever happens to it now, the order exists and this key answers 201.
  const outcome = cmd.waitMs > 0 ? await resultBy(temporal, handle, answerBy - liveReadReserve(cmd.waitMs)) : undefined;
  let saga: SagaView;
  if (outcome) saga = sagaFromResult(outcome);
  // A healed request's saga may have run for a while (or ended): report what it is, not what we started.
  else if (cmd.waitMs > 0) saga = await liveSaga(temporal, orderId, Math.max(answerBy, Date.now() + LIVE_READ_MIN_MS), db);
  else if (claim.kind === 'heal') saga = await liveSaga(temporal, orderId, undefined, db);
  else saga = { status: 'running' };
  const fresh = saga.status === 'running' ? row : ((await findOrder(db, orderId)) ?? row);
  const body = JSON.stringify(orderView(fresh, saga));
  await completeKey(db, cmd.clientId, cmd.idempotencyKey, 201, body);
  return { kind: 'answer', orderId, status: 201, body, replayed: false, healed: claim.kind === 'heal' };
}

/**
 * The saga's result if it ends by `deadline`, else undefined. The long poll for the result
 * carries the deadline (to the server too), so it ends with the wait: one left running would
 * hold a stream on the connection, and re-poll, until the saga ends, however long that takes.
 */
async function resultBy(temporal: Client, handle: Awaited<ReturnType<typeof startOrderSaga>>, deadline: number): Promise<OrderSagaResult | undefined> {
  if (deadline <= Date.now()) return undefined;
  return temporal.withDeadline(deadline, () => handle.result()).catch(() => undefined);
}
