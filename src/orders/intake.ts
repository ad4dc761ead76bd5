import { randomBytes } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { z } from 'zod';
import { createOrderRequest } from '../api/schemas';
import type { Db } from '../db/pool';
import { InvalidMessage, type InboxHandler } from '@sagaflow/toolkit/inbox';
import type { InboxTopology } from '@sagaflow/toolkit/inbox';
import { fingerprint } from '@sagaflow/toolkit/ledger';
import { orderWorkflowId } from '../../workflows/order/ids';
import { insertOrder, markSagaStarted, toOrderInput, findOrder } from './repository';
import { startOrderSaga } from './start';

/**
 * The stream door: an order request as a message. The body is the body of POST /orders,
 * with the message's ID in `messageId` when no `Nats-Msg-Id` header carries it.
 */
export const orderMessage = createOrderRequest.extend({ messageId: z.string().min(1).max(255).optional() }).strict();
export type OrderMessage = z.infer<typeof orderMessage>;

/** The stream, subjects, consumer and dead letters of the order intake (config: INTAKE_*). */
export function orderIntakeTopology(overrides: Partial<InboxTopology> = {}): InboxTopology {
  return {
    stream: 'SAGAFLOW_ORDERS',
    subjects: ['sagaflow.orders.requested'],
    consumer: 'sagaflow-intake',
    deadLetterStream: 'SAGAFLOW_ORDERS_DLQ',
    deadLetterSubject: 'sagaflow.orders.dead-letter',
    maxDeliver: 5,
    maxAckPending: 256,
    ackWaitMs: 30_000,
    ...overrides,
  };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes an order message: UTF-8, JSON, the order schema (which refuses text PostgreSQL cannot store). */
export function parseOrderMessage(body: Uint8Array): { payload: OrderMessage; fingerprint: string; messageId?: string } {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new InvalidMessage('the body is not UTF-8');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidMessage(`the body is not JSON: ${(err as Error).message}`);
  }
  const parsed = orderMessage.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
    throw new InvalidMessage(`the body is not an order request: ${issues}`);
  }
  return { payload: parsed.data, fingerprint: fingerprint(raw), messageId: parsed.data.messageId };
}

/**
 * Order requests from a stream, exactly once: the message's record and the order row
 * commit together; the saga starts by the order's deterministic workflow ID after the
 * commit, and again (idempotently) on a redelivery whose order has no saga yet.
 */
export function orderIntakeHandler(deps: {
  db: Db;
  temporal: Client;
  taskQueue: string;
  source: string;
  searchAttributes?: boolean;
  /** The workflow type sagas start as (SAGAFLOW_ORDER_SAGA_TYPE); the order saga's current one when unset. */
  workflowType?: string;
  /** How long a saga start may take before the message is left for its redelivery (default 10 s). */
  startTimeoutMs?: number;
}): InboxHandler<OrderMessage> {
  return {
    source: deps.source,
    parse: parseOrderMessage,
    newResourceId: () => `ord_${randomBytes(10).toString('hex')}`,
    async apply(tx, payload, orderId) {
      const { messageId: _id, ...order } = payload;
      if (!(await insertOrder(tx, { ...order, orderId }, { clientId: null, workflowId: orderWorkflowId(orderId) }))) {
        throw new Error(`fresh order ID ${orderId} already taken`);
      }
    },
    async afterCommit(orderId, _payload, claim) {
      // A redelivery's order may have its saga already; a new one's cannot.
      if (claim === 'duplicate') {
        const started = await deps.db.query<{ started: boolean }>('SELECT saga_started_at IS NOT NULL AS started FROM orders WHERE id = $1', [orderId]);
        if (started.rows[0]?.started) return;
      }
      const row = await findOrder(deps.db, orderId);
      if (!row) throw new Error(`order ${orderId} missing under its inbox record`);
      // Temporal unreachable: the client would retry for long; the broker's redelivery retries instead.
      await deps.temporal.withDeadline(Date.now() + (deps.startTimeoutMs ?? 10_000), () =>
        startOrderSaga(deps.temporal, toOrderInput(row), deps.taskQueue, { searchAttributes: deps.searchAttributes, workflowType: deps.workflowType }),
      );
      await markSagaStarted(deps.db, orderId);
    },
  };
}
