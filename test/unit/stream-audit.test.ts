import {
  checkOrderEvents,
  checkSeenOnce,
  checkStreamMessages,
  checkWebhooks,
  type DeliveryRow,
  type EventForAudit,
  type OrderForEvents,
} from '../../dev/chaos/stream-audit';

/** The soak's audit of the stream doors (dev/chaos/stream-audit.ts): each check finds what it must, and nothing on sound rows. */
let position = 0;
const event = (order_id: string, type: string, extra: Partial<EventForAudit> = {}): EventForAudit => ({
  position: String(++position),
  event_id: `ev-${order_id}-${type}-${position}`,
  order_id,
  client_id: 'cli_1',
  type,
  published: true,
  ...extra,
});
const order = (id: string, status: string, client_id: string | null = 'cli_1'): OrderForEvents => ({ id, status, client_id });

describe('order events against the orders', () => {
  test('sound events: created first, one terminal event that the status allows, last', () => {
    const orders = [order('a', 'completed'), order('b', 'failed'), order('c', 'cancelled'), order('d', 'failed'), order('e', 'cancelled', null)];
    const events = [
      event('a', 'created'),
      event('a', 'completed'),
      event('b', 'created'),
      event('b', 'compensated'),
      event('c', 'created'),
      event('c', 'cancelled'),
      // A compensation that failed for good: its events, then a failed end in place of compensated or cancelled.
      event('d', 'created'),
      event('d', 'compensation_failed'),
      event('d', 'failed'),
      event('e', 'created', { client_id: null }),
      event('e', 'compensation_failed', { client_id: null }),
      event('e', 'compensation_failed', { client_id: null }),
      event('e', 'failed', { client_id: null }),
    ];
    expect(checkOrderEvents(orders, events)).toEqual([]);
  });

  test('a missing or doubled event, a wrong or misplaced end, an unpublished event, a stranger', () => {
    const orders = [order('a', 'completed'), order('b', 'failed'), order('c', 'cancelled'), order('d', 'completed'), order('f', 'failed'), order('g', 'failed')];
    const events = [
      event('a', 'created'),
      event('a', 'created'),
      event('a', 'completed'),
      event('b', 'created'),
      event('b', 'cancelled'),
      event('c', 'created', { published: false }),
      event('d', 'created'),
      event('d', 'completed'),
      event('d', 'completed'),
      event('f', 'created'),
      event('f', 'failed'),
      event('g', 'created'),
      event('g', 'compensation_failed'),
      event('g', 'compensated'),
      event('zz', 'created'),
    ];
    const problems = checkOrderEvents(orders, events);
    expect(problems).toEqual([
      'zz: 1 events (created) of an order that does not exist',
      'a (completed): 2 created events, not one (events: created, created, completed)',
      'b (failed): its terminal event is cancelled, which its status does not allow (compensated or failed)',
      'c (cancelled): 0 terminal events, not one (events: created)',
      'd (completed): 2 terminal events, not one (events: created, completed, completed)',
      'f (failed): a failed end with no compensation_failed event before it',
      'g (failed): 1 compensation_failed events, but it ended compensated, not failed',
      expect.stringMatching(/^c: event ev-c-created-\d+ \(created\) never published$/),
    ]);
  });

  test('an event after the end, and an event naming another client', () => {
    const events = [event('a', 'created'), event('a', 'completed'), event('a', 'compensation_failed', { client_id: 'cli_2' })];
    expect(checkOrderEvents([order('a', 'completed')], events)).toEqual([
      expect.stringMatching(/^a \(completed\): event ev-a-compensation_failed-\d+ \(compensation_failed\) names client cli_2, the order cli_1$/),
      'a (completed): an event after its terminal completed: created, completed, compensation_failed',
      'a (completed): 1 compensation_failed events, but it ended completed, not failed',
    ]);
  });
});

describe('a consumer that must see each event once', () => {
  const events = [event('a', 'created'), event('a', 'completed'), event('b', 'created')];
  const seen = (e: EventForAudit) => ({ event_id: e.event_id, type: e.type, order_id: e.order_id });

  test('each once: clean', () => {
    expect(checkSeenOnce('the counter', events, events.map(seen))).toEqual([]);
  });

  test('one missed, one twice, one as the wrong event, one unknown', () => {
    const rows = [seen(events[0]!), seen(events[0]!), { ...seen(events[1]!), type: 'cancelled' }, { event_id: 'nope', type: 'created', order_id: 'x' }];
    expect(checkSeenOnce('the counter', events, rows)).toEqual([
      `a: the counter applied event ${events[0]!.event_id} (created) 2 times`,
      `a: the counter applied event ${events[1]!.event_id} as cancelled of a, not completed of a`,
      `b: the counter never applied event ${events[2]!.event_id} (created)`,
      'the counter applied event nope, which the outbox does not have (1 times)',
    ]);
  });

  test('a projection of completed events only: another kind applied is named', () => {
    const completed = events.filter((e) => e.type === 'completed');
    expect(checkSeenOnce('the projection', completed, [seen(events[1]!), seen(events[0]!)], events)).toEqual([
      `a: the projection applied event ${events[0]!.event_id} (created), which is not one of its events`,
    ]);
  });
});

describe('stream messages against the orders, the inbox and the dead letters', () => {
  const msg = (n: number, acked = true) => ({ messageId: `m${n}`, customerId: `stream-${n}`, acked, repeated: n === 1 });
  const ord = (n: number, id = `ord_${n}`) => ({ id, customer_id: `stream-${n}`, client_id: null });
  const rec = (n: number, id = `ord_${n}`) => ({ message_id: `m${n}`, resource_id: id });

  test('each acked message made one order its inbox record names; one never acked made none: clean', () => {
    expect(checkStreamMessages([msg(1), msg(2), msg(3, false)], [ord(1), ord(2)], [rec(1), rec(2)], [])).toEqual([]);
  });

  test('two orders of one message, a lost message, a dead letter, a stray order and record', () => {
    const problems = checkStreamMessages(
      [msg(1), msg(2), msg(3), msg(4)],
      [ord(1), ord(1, 'ord_1b'), ord(4, 'ord_4'), ord(9)],
      [rec(1), rec(4, 'ord_other'), rec(8)],
      [{ sequence: 7, reason: 'exhausted', detail: 'failed 5 deliveries; the last: connection refused', messageId: 'm3' }],
    );
    expect(problems).toEqual([
      'message m1 (published twice) made 2 orders: ord_1, ord_1b',
      'message m2 was acked by the broker but made no order, and it is not among the dead letters',
      'message m3 was acked by the broker but made no order: dead-lettered (exhausted: failed 5 deliveries; the last: connection refused)',
      'message m4: the inbox names order ord_other, but the message made ord_4',
      'ord_9: a stream order (customer stream-9) that no message of the soak asked for',
      "the intake's inbox records message m8 (order ord_8), which the soak never published",
      'dead letter 7 on the order stream: exhausted: failed 5 deliveries; the last: connection refused (message m3)',
    ]);
  });

  test('an order without its inbox record', () => {
    expect(checkStreamMessages([msg(1)], [ord(1)], [], [])).toEqual(["message m1 (published twice) made order ord_1, but the intake's inbox has no record of it"]);
  });
});

describe('webhooks against the deliveries and what the receiver applied', () => {
  const events = [event('a', 'created'), event('a', 'completed')];
  const delivery = (e: EventForAudit, extra: Partial<DeliveryRow> = {}): DeliveryRow => ({
    id: `msg_${e.event_id}`,
    endpoint_id: 'whe_1',
    event_id: e.event_id,
    type: e.type,
    order_id: e.order_id,
    state: 'delivered',
    attempts: 1,
    last_error: null,
    ...extra,
  });
  const applied = (d: DeliveryRow) => ({ webhookId: d.id, eventId: d.event_id, type: d.type, orderId: d.order_id, path: '/hooks' });
  const base = { endpointId: 'whe_1', path: '/hooks', disabledReason: null, events, badSignatures: 0 };

  test('every event delivered and applied once: clean', () => {
    const deliveries = events.map((e) => delivery(e));
    expect(checkWebhooks({ ...base, deliveries, applied: deliveries.map(applied) })).toEqual([]);
  });

  test('a missing delivery, one not delivered, one marked delivered the receiver never applied, a disabled endpoint, a bad signature', () => {
    const third = event('b', 'created');
    const deliveries = [delivery(events[0]!, { state: 'pending', attempts: 4, last_error: 'HTTP 500' }), delivery(third)];
    const problems = checkWebhooks({ ...base, events: [...events, third], deliveries, applied: [], disabledReason: '30 consecutive failed attempts', badSignatures: 2 });
    expect(problems).toEqual([
      'webhook endpoint whe_1 was disabled: 30 consecutive failed attempts',
      'the receiver refused 2 requests whose signature did not verify',
      `a: event ${events[1]!.event_id} (completed) has no webhook delivery`,
      `a: webhook delivery msg_${events[0]!.event_id} (created) pending after 4 attempts; the last: HTTP 500`,
      `b: webhook delivery msg_${third.event_id} (created) is marked delivered, but the receiver never applied it`,
    ]);
  });

  test('one event applied under two webhook-ids, and a webhook-id that is no delivery', () => {
    const deliveries = events.map((e) => delivery(e));
    const twice = { ...applied(deliveries[0]!), webhookId: 'msg_other' };
    const problems = checkWebhooks({ ...base, deliveries, applied: [...deliveries.map(applied), twice] });
    expect(problems).toEqual([
      'the receiver applied webhook-id msg_other (created of a), which is no delivery of the endpoint',
      `event ${events[0]!.event_id} applied 2 times at /hooks after the dedupe (webhook-ids msg_${events[0]!.event_id}, msg_other)`,
    ]);
  });
});
