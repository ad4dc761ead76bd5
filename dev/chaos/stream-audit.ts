/**
 * The soak's audit of the stream doors, from the rows and from what the receiver saw:
 *
 * - stream intake: every message the broker acked made exactly one order (found by
 *   its customer, unique to the message, not through the inbox it checks), and the
 *   inbox holds its ID naming that order; a message never acked made at most one; a
 *   stream order no message asked for, an inbox record of no message, and every dead
 *   letter (the soak publishes only valid messages) are violations;
 * - outbox: every order has exactly one `created` event, its first, and, once closed,
 *   exactly one terminal event (completed, cancelled, compensated or failed), its
 *   last, matching its status; `compensation_failed` events only before a `failed`
 *   end, and a `failed` end only after one; every event published, seen exactly once
 *   by the counting consumer, and each completed event exactly once by the example
 *   projection;
 * - webhooks: every event of the client's orders has one delivery to its endpoint,
 *   delivered; the receiver applied each delivery's webhook-id (it saw it at least
 *   once), with the delivery's event, and after its dedupe by webhook-id exactly once
 *   per (endpoint, event); no request failed its signature.
 *
 * The checks are pure functions of the rows, one line per violation.
 */

/** Which terminal events an order's final status allows (a `failed` end: a compensation failed for good). */
export const TERMINAL_EVENTS_FOR_STATUS: Record<string, readonly string[]> = {
  completed: ['completed'],
  cancelled: ['cancelled', 'failed'],
  failed: ['compensated', 'failed'],
};
const TERMINAL = new Set(['completed', 'cancelled', 'compensated', 'failed']);
const KNOWN_TYPES = new Set([...TERMINAL, 'created', 'compensation_failed']);

export interface OrderForEvents {
  id: string;
  status: string;
  client_id: string | null;
}

export interface EventForAudit {
  position: string;
  event_id: string;
  order_id: string;
  client_id: string | null;
  type: string;
  published: boolean;
}

/** Every order's events against its status: created once and first, one terminal event matching it and last. */
export function checkOrderEvents(orders: OrderForEvents[], events: EventForAudit[]): string[] {
  const problems: string[] = [];
  const byOrder = new Map<string, EventForAudit[]>();
  for (const e of events) byOrder.set(e.order_id, [...(byOrder.get(e.order_id) ?? []), e]);
  const known = new Set(orders.map((o) => o.id));
  for (const [orderId, list] of byOrder) {
    if (!known.has(orderId)) problems.push(`${orderId}: ${list.length} events (${list.map((e) => e.type).join(', ')}) of an order that does not exist`);
  }
  for (const o of orders) {
    const list = [...(byOrder.get(o.id) ?? [])].sort((a, b) => Number(a.position) - Number(b.position));
    const add = (p: string) => problems.push(`${o.id} (${o.status}): ${p}`);
    const types = list.map((e) => e.type);
    const created = list.filter((e) => e.type === 'created');
    if (created.length !== 1) add(`${created.length} created events, not one (events: ${types.join(', ') || 'none'})`);
    else if (list[0]!.type !== 'created') add(`its first event is ${list[0]!.type}, not created (events: ${types.join(', ')})`);
    for (const e of list) {
      if (!KNOWN_TYPES.has(e.type)) add(`an event of unknown type ${e.type}`);
      if (e.client_id !== o.client_id) add(`event ${e.event_id} (${e.type}) names client ${e.client_id ?? 'none'}, the order ${o.client_id ?? 'none'}`);
    }
    const terminal = list.filter((e) => TERMINAL.has(e.type));
    if (o.status === 'pending') {
      if (terminal.length) add(`still pending, but it has terminal events: ${terminal.map((e) => e.type).join(', ')}`);
      continue;
    }
    const allowed = TERMINAL_EVENTS_FOR_STATUS[o.status] ?? [];
    if (terminal.length !== 1) {
      add(`${terminal.length} terminal events, not one (events: ${types.join(', ') || 'none'})`);
      continue;
    }
    const end = terminal[0]!;
    if (!allowed.includes(end.type)) add(`its terminal event is ${end.type}, which its status does not allow (${allowed.join(' or ')})`);
    if (list[list.length - 1] !== end) add(`an event after its terminal ${end.type}: ${types.join(', ')}`);
    const compensationFailed = list.filter((e) => e.type === 'compensation_failed').length;
    if (end.type === 'failed' && compensationFailed === 0) add('a failed end with no compensation_failed event before it');
    if (end.type !== 'failed' && compensationFailed > 0) add(`${compensationFailed} compensation_failed events, but it ended ${end.type}, not failed`);
  }
  const unpublished = events.filter((e) => !e.published);
  for (const e of unpublished.slice(0, 20)) problems.push(`${e.order_id}: event ${e.event_id} (${e.type}) never published`);
  if (unpublished.length > 20) problems.push(`... and ${unpublished.length - 20} more events never published`);
  return problems;
}

export interface SeenRow {
  event_id: string;
  type: string;
  order_id: string;
}

/**
 * What a consumer applied against the outbox: `expected` events each exactly once (after its
 * dedupe), with the event's type and order, and nothing else.
 */
export function checkSeenOnce(consumer: string, expected: EventForAudit[], seen: SeenRow[], others: EventForAudit[] = []): string[] {
  const problems: string[] = [];
  const seenBy = new Map<string, SeenRow[]>();
  for (const r of seen) seenBy.set(r.event_id, [...(seenBy.get(r.event_id) ?? []), r]);
  const missing: string[] = [];
  for (const e of expected) {
    const rows = seenBy.get(e.event_id) ?? [];
    if (rows.length === 0) missing.push(`${e.order_id}: ${consumer} never applied event ${e.event_id} (${e.type})`);
    else if (rows.length > 1) problems.push(`${e.order_id}: ${consumer} applied event ${e.event_id} (${e.type}) ${rows.length} times`);
    for (const r of rows) {
      if (r.order_id !== e.order_id || r.type !== e.type) {
        problems.push(`${e.order_id}: ${consumer} applied event ${e.event_id} as ${r.type} of ${r.order_id}, not ${e.type} of ${e.order_id}`);
      }
    }
  }
  problems.push(...missing.slice(0, 20));
  if (missing.length > 20) problems.push(`... and ${missing.length - 20} more events ${consumer} never applied`);
  const wanted = new Set(expected.map((e) => e.event_id));
  const otherIds = new Map(others.map((e) => [e.event_id, e]));
  for (const [id, rows] of seenBy) {
    if (wanted.has(id)) continue;
    const other = otherIds.get(id);
    problems.push(other ? `${other.order_id}: ${consumer} applied event ${id} (${other.type}), which is not one of its events` : `${consumer} applied event ${id}, which the outbox does not have (${rows.length} times)`);
  }
  return problems;
}

export interface StreamMessageForAudit {
  messageId: string;
  customerId: string;
  /** The broker acked it (stored). */
  acked: boolean;
  /** Published again with the same ID. */
  repeated: boolean;
}

export interface StreamOrderRow {
  id: string;
  customer_id: string;
  client_id: string | null;
}

export interface InboxRow {
  message_id: string;
  resource_id: string;
}

export interface DeadLetterForAudit {
  sequence: number;
  reason: string;
  detail: string;
  messageId?: string;
}

/** Every message the soak published against the orders, the intake's inbox records and its dead letters. */
export function checkStreamMessages(
  messages: StreamMessageForAudit[],
  streamOrders: StreamOrderRow[],
  inbox: InboxRow[],
  deadLetters: DeadLetterForAudit[],
): string[] {
  const problems: string[] = [];
  const ordersOf = new Map<string, StreamOrderRow[]>();
  for (const o of streamOrders) ordersOf.set(o.customer_id, [...(ordersOf.get(o.customer_id) ?? []), o]);
  const inboxOf = new Map(inbox.map((r) => [r.message_id, r]));
  const deadOf = new Map<string, DeadLetterForAudit[]>();
  for (const d of deadLetters) if (d.messageId) deadOf.set(d.messageId, [...(deadOf.get(d.messageId) ?? []), d]);
  const planned = new Set(messages.map((m) => m.customerId));
  const ids = new Set(messages.map((m) => m.messageId));
  for (const m of messages) {
    const orders = ordersOf.get(m.customerId) ?? [];
    const record = inboxOf.get(m.messageId);
    const what = `message ${m.messageId}${m.repeated ? ' (published twice)' : ''}`;
    if (orders.length > 1) problems.push(`${what} made ${orders.length} orders: ${orders.map((o) => o.id).join(', ')}`);
    if (orders.length === 0 && m.acked) {
      const dead = deadOf.get(m.messageId);
      problems.push(
        dead?.length
          ? `${what} was acked by the broker but made no order: dead-lettered (${dead.map((d) => `${d.reason}: ${d.detail}`).join('; ')})`
          : `${what} was acked by the broker but made no order, and it is not among the dead letters`,
      );
    }
    for (const o of orders) if (o.client_id !== null) problems.push(`${what}: its order ${o.id} belongs to API client ${o.client_id}`);
    if (orders.length >= 1 && !record) problems.push(`${what} made order ${orders[0]!.id}, but the intake's inbox has no record of it`);
    if (record && orders.length === 1 && record.resource_id !== orders[0]!.id) {
      problems.push(`${what}: the inbox names order ${record.resource_id}, but the message made ${orders[0]!.id}`);
    }
    if (record && orders.length === 0) problems.push(`${what}: the inbox names order ${record.resource_id}, which does not exist`);
  }
  for (const o of streamOrders) if (!planned.has(o.customer_id)) problems.push(`${o.id}: a stream order (customer ${o.customer_id}) that no message of the soak asked for`);
  for (const r of inbox) if (!ids.has(r.message_id)) problems.push(`the intake's inbox records message ${r.message_id} (order ${r.resource_id}), which the soak never published`);
  for (const d of deadLetters) {
    problems.push(`dead letter ${d.sequence} on the order stream: ${d.reason}: ${d.detail}${d.messageId ? ` (message ${d.messageId})` : ''}`);
  }
  return problems;
}

export interface DeliveryRow {
  id: string;
  endpoint_id: string;
  event_id: string;
  type: string;
  order_id: string;
  state: string;
  attempts: number;
  last_error: string | null;
}

export interface AppliedHit {
  webhookId: string;
  eventId: string;
  type: string;
  orderId: string;
  path: string;
}

/**
 * The client's events against the deliveries to its endpoint and what the receiver applied:
 * one delivery per event, delivered; each delivery's webhook-id applied with its event (seen
 * at least once); after the dedupe by webhook-id, each (endpoint, event) applied exactly once.
 */
export function checkWebhooks(opts: {
  endpointId: string;
  /** The receiver's path of the endpoint. */
  path: string;
  disabledReason: string | null;
  events: EventForAudit[];
  deliveries: DeliveryRow[];
  applied: AppliedHit[];
  badSignatures: number;
}): string[] {
  const problems: string[] = [];
  if (opts.disabledReason !== null) problems.push(`webhook endpoint ${opts.endpointId} was disabled: ${opts.disabledReason}`);
  if (opts.badSignatures > 0) problems.push(`the receiver refused ${opts.badSignatures} requests whose signature did not verify`);
  const mine = opts.deliveries.filter((d) => d.endpoint_id === opts.endpointId);
  const deliveryOf = new Map<string, DeliveryRow[]>();
  for (const d of mine) deliveryOf.set(d.event_id, [...(deliveryOf.get(d.event_id) ?? []), d]);
  const missing: string[] = [];
  for (const e of opts.events) {
    const ds = deliveryOf.get(e.event_id) ?? [];
    if (ds.length === 0) missing.push(`${e.order_id}: event ${e.event_id} (${e.type}) has no webhook delivery`);
    if (ds.length > 1) problems.push(`${e.order_id}: event ${e.event_id} (${e.type}) has ${ds.length} webhook deliveries`);
    for (const d of ds) {
      if (d.type !== e.type || d.order_id !== e.order_id) problems.push(`${e.order_id}: delivery ${d.id} carries ${d.type} of ${d.order_id} for event ${e.event_id} (${e.type})`);
    }
  }
  problems.push(...missing.slice(0, 20));
  if (missing.length > 20) problems.push(`... and ${missing.length - 20} more events with no webhook delivery`);
  const events = new Set(opts.events.map((e) => e.event_id));
  for (const d of mine) if (!events.has(d.event_id)) problems.push(`${d.order_id}: delivery ${d.id} of event ${d.event_id}, which is not one of the client's events`);

  const appliedOf = new Map<string, AppliedHit>();
  for (const a of opts.applied) appliedOf.set(a.webhookId, a);
  const notDelivered = mine.filter((d) => d.state !== 'delivered');
  for (const d of notDelivered.slice(0, 20)) {
    problems.push(`${d.order_id}: webhook delivery ${d.id} (${d.type}) ${d.state} after ${d.attempts} attempts${d.last_error ? `; the last: ${d.last_error}` : ''}`);
  }
  if (notDelivered.length > 20) problems.push(`... and ${notDelivered.length - 20} more webhook deliveries not delivered`);
  for (const d of mine) {
    const a = appliedOf.get(d.id);
    if (!a) {
      if (d.state === 'delivered') problems.push(`${d.order_id}: webhook delivery ${d.id} (${d.type}) is marked delivered, but the receiver never applied it`);
      continue;
    }
    if (a.eventId !== d.event_id || a.type !== d.type || a.orderId !== d.order_id || a.path !== opts.path) {
      problems.push(`${d.order_id}: webhook-id ${d.id} reached ${a.path} with ${a.type} of ${a.orderId} (event ${a.eventId}), not ${d.type} of ${d.order_id} (event ${d.event_id})`);
    }
  }
  const ids = new Set(mine.map((d) => d.id));
  const perEvent = new Map<string, string[]>();
  for (const a of opts.applied) {
    if (!ids.has(a.webhookId)) problems.push(`the receiver applied webhook-id ${a.webhookId} (${a.type} of ${a.orderId}), which is no delivery of the endpoint`);
    const key = `${a.path} ${a.eventId}`;
    perEvent.set(key, [...(perEvent.get(key) ?? []), a.webhookId]);
  }
  for (const [key, webhookIds] of perEvent) {
    if (webhookIds.length > 1) problems.push(`event ${key.split(' ')[1]} applied ${webhookIds.length} times at ${key.split(' ')[0]} after the dedupe (webhook-ids ${webhookIds.join(', ')})`);
  }
  return problems;
}
