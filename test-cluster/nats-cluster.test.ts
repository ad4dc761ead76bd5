/**
 * The stream door and the outbox on a 3-node NATS JetStream cluster (R3 streams),
 * the node leading the order stream SIGKILLed mid-run: every order message
 * published makes exactly one order and one saga, every order event is published,
 * and nothing is lost. Asserted on rows and on the streams' contents.
 */
import { randomBytes } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsCluster, type NatsCluster } from '../dev/nats';
import { ensureInboxTopology, runJetStreamInbox, type RunningInbox } from '../packages/toolkit/src/inbox/jetstream';
import { orderIntakeHandler, orderIntakeTopology } from '../src/orders/intake';
import { ensureEventStream, relayLag, runRelay, type RunningRelay } from '../src/orders/relay';
import { createSagaWorker } from '../workers/worker';
import { createTestContext, seedInventory, uniqueId, type TestContext } from '../test/helpers/context';

let ctx: TestContext;
let cluster: NatsCluster;
let nc: NatsConnection;
let jsm: JetStreamManager;
let intake: RunningInbox | undefined;
let relay: RunningRelay | undefined;
const taskQueue = uniqueId('nats-cluster');

beforeAll(async () => {
  ctx = await createTestContext('nats_cluster');
  ctx.startWorker(await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps }));
  cluster = await startNatsCluster({ log: (m) => process.stderr.write(`[nats cluster] ${m}\n`) });
  nc = await connect({ servers: cluster.url.split(','), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  jsm = await jetstreamManager(nc);
}, 120_000);

afterAll(async () => {
  await intake?.stop();
  await relay?.stop();
  await nc?.close();
  await cluster?.stop();
  await ctx?.close();
});

/** The stream's message at `seq`, asked again while the cluster does not answer; fails if it never does. */
async function readMessage(stream: string, seq: number) {
  let last: unknown;
  for (let i = 0; i < 50; i++) {
    try {
      const m = await jsm.streams.getMessage(stream, { seq });
      if (m) return m;
      last = new Error(`no message ${seq} in ${stream}`);
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw last;
}

async function until<T>(read: () => Promise<T>, pred: (v: T) => boolean, what: string, rounds = 1200): Promise<T> {
  let v = await read();
  for (let i = 0; i < rounds && !pred(v); i++) {
    await new Promise((r) => setTimeout(r, 100));
    v = await read().catch(() => v);
  }
  if (!pred(v)) throw new Error(`never reached: ${what} (last: ${JSON.stringify(v)})`);
  return v;
}

test('the node leading the R3 order stream SIGKILLed mid-run: every message makes one order, every order event is published, nothing lost', async () => {
  const tag = randomBytes(3).toString('hex');
  const topology = orderIntakeTopology({
    stream: `C_ORDERS_${tag}`,
    subjects: [`c.${tag}.orders`],
    consumer: `intake-${tag}`,
    deadLetterStream: `C_ORDERS_DLQ_${tag}`,
    deadLetterSubject: `c.${tag}.dead`,
    replicas: 3,
    ackWaitMs: 5000,
    maxDeliver: 50,
  });
  await ensureInboxTopology(nc, topology);
  const events = { stream: `C_EVENTS_${tag}`, subjectPrefix: `c.${tag}.events`, replicas: 3 };
  await ensureEventStream(nc, events);
  expect((await jsm.streams.info(topology.stream)).config.num_replicas).toBe(3);

  intake = await runJetStreamInbox({
    nc,
    db: ctx.db,
    topology,
    retentionMs: 86_400_000,
    backoffMs: () => 250,
    handler: orderIntakeHandler({ db: ctx.db, temporal: ctx.client, taskQueue, source: topology.stream }),
  });
  relay = runRelay({ db: ctx.db, nc, stream: events, idleMs: 50 });

  const total = 60;
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: total });
  const body = (i: number) =>
    JSON.stringify({
      customerId: `cluster-${tag}-${i}`,
      items: [{ sku, quantity: 1 }],
      amount: { amountMinor: 1_000, currency: 'EUR' },
      paymentToken: 'tok_visa',
      shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
    });
  const js = jetstream(nc, { timeout: 2000 });
  /** A producer as a real one is: a publish that fails or times out is sent again, same ID. */
  const publish = async (i: number) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await js.publish(topology.subjects[0]!, body(i), { msgID: `${tag}-${i}` });
      } catch (err) {
        if (attempt >= 100) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };
  for (let i = 0; i < total / 3; i++) await publish(i);
  const leader = (await jsm.streams.info(topology.stream)).cluster?.leader;
  const victim = Number(/^n(\d)$/.exec(leader ?? '')?.[1]) - 1;
  expect(victim).toBeGreaterThanOrEqual(0);
  await cluster.nodes[victim]!.stop('SIGKILL');
  for (let i = total / 3; i < total; i++) await publish(i);

  const orders = async () =>
    (await ctx.db.query<{ customer_id: string; n: number }>(
      `SELECT customer_id, count(*)::int AS n FROM orders WHERE customer_id LIKE $1 GROUP BY customer_id`,
      [`cluster-${tag}-%`],
    )).rows;
  const made = await until(orders, (r) => r.length === total, `${total} orders`);
  expect(made.every((r) => r.n === 1)).toBe(true);
  const inbox = await ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM inbox_messages WHERE source = $1', [topology.stream]);
  expect(inbox.rows[0]!.n).toBe(total);

  // The killed node comes back on its store and catches up; the consumer ends with nothing pending.
  await cluster.restart(victim);
  await until(() => jsm.consumers.info(topology.stream, topology.consumer), (i) => i.num_pending === 0 && i.num_ack_pending === 0, 'consumer settled');
  expect((await jsm.streams.info(topology.stream)).state.messages).toBeGreaterThanOrEqual(total);

  // Every order event of these orders published, each once (by its ID) in the R3 event stream.
  const ids = made.map((r) => r.customer_id);
  await until(() => relayLag(ctx.db), (l) => l.unpublished === 0, 'relay caught up');
  const { rows: rowsOut } = await ctx.db.query<{ event_id: string }>(
    `SELECT e.event_id FROM order_events e JOIN orders o ON o.id = e.order_id WHERE o.customer_id = ANY($1)`,
    [ids],
  );
  const info = await jsm.streams.info(events.stream);
  const seen = new Set<string>();
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    // A read may time out while the restarted node rejoins: asked again, never taken for a gap.
    const m = await readMessage(events.stream, seq);
    const id = m.header?.get('Nats-Msg-Id');
    if (id) seen.add(id);
  }
  expect(rowsOut.length).toBeGreaterThanOrEqual(total);
  expect(rowsOut.filter((r) => !seen.has(r.event_id))).toEqual([]);
});
