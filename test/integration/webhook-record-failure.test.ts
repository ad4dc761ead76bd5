/**
 * A webhook sender that fails while it records an attempt (its process killed, its
 * connection terminated, PostgreSQL restarting) must leave nothing half-written: the
 * delivery is attempted again once its claim runs out, and that attempt is recorded
 * and delivered. Recorded in pieces, the first piece (the attempt's row) survived
 * alone, and every later attempt of the delivery collided with it on its number: the
 * delivery was sent again and again and never marked, and being its endpoint's oldest
 * pending one, it held back every later event of that endpoint.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { createApiClient } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import { createEndpoint } from '../../src/webhooks/endpoints';
import { runWebhookSender, type RunningSender } from '../../src/webhooks/sender';
import { parseSealingKey } from '../../src/webhooks/signing';
import { createTestSchema, uniqueId } from '../helpers/context';
import { placeClientOrder } from '../helpers/client-orders';
import { until } from '../helpers/until';

let schema: Awaited<ReturnType<typeof createTestSchema>>;
let db: Db;
let receiver: http.Server;
const received: string[] = [];
const sealingKey = parseSealingKey(randomBytes(32).toString('base64'));
let sender: RunningSender | undefined;

beforeAll(async () => {
  schema = await createTestSchema('webhook_record');
  db = schema.db;
  receiver = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      received.push(String(req.headers['webhook-id']));
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  await sender?.stop();
  receiver?.closeAllConnections();
  await new Promise((r) => receiver?.close(r));
  await schema?.drop();
});

test('an attempt whose recording failed halfway is made again, recorded once, and delivered', async () => {
  const client = await createApiClient(db, uniqueId('rec'));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  const endpoint = await createEndpoint(db, { clientId: client.id, url, sealingKey, allowPrivate: true });
  await placeClientOrder(db, client.id, 'rec', 500);
  // The first update of a delivery fails, as a terminated connection or a killed sender would make it
  // fail: after whatever the sender wrote before it. (A sequence: its count survives the rollback.)
  await db.query(`CREATE SEQUENCE delivery_update_failures`);
  await db.query(`
    CREATE FUNCTION fail_first_delivery_update() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF nextval('delivery_update_failures') = 1 THEN RAISE EXCEPTION 'the sender died here'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER fail_first_delivery_update BEFORE UPDATE ON webhook_deliveries FOR EACH ROW
      WHEN (OLD.locked_until IS NOT NULL AND NEW.locked_until IS NULL) EXECUTE FUNCTION fail_first_delivery_update();`);
  const errors: string[] = [];
  sender = runWebhookSender({ db, sealingKey, allowPrivate: true, idleMs: 20, timeoutMs: 2_000, retryScheduleMs: [50], onError: (e) => errors.push(e.message) });
  await until(async () => errors, (e) => e.length > 0, 'the failed recording');
  expect(errors[0]).toBe('the sender died here');
  expect(received).toHaveLength(1);
  // The claim runs out (its lease is the attempt's time limit and 30 s more): the delivery is due again.
  await db.query(`UPDATE webhook_deliveries SET locked_until = now() - interval '1 s' WHERE endpoint_id = $1`, [endpoint.id]);
  const [delivery] = await until(
    async () => (await db.query<{ id: string; state: string; attempts: number }>(`SELECT id, state, attempts FROM webhook_deliveries WHERE endpoint_id = $1`, [endpoint.id])).rows,
    (rows) => rows[0]?.state === 'delivered',
    'delivered after the failed recording',
  ).catch((err: Error) => {
    throw new Error(`${err.message}; the sender's errors: ${[...new Set(errors)].join(' | ')}`);
  });
  // Sent twice (the receiver dedupes on webhook-id), recorded as the one attempt that was.
  expect(received).toEqual([delivery!.id, delivery!.id]);
  expect(delivery!.attempts).toBe(1);
  const attempts = await db.query<{ attempt: number; status: number }>(`SELECT attempt, status FROM webhook_attempts WHERE delivery_id = $1`, [delivery!.id]);
  expect(attempts.rows).toEqual([{ attempt: 1, status: 204 }]);
  expect(errors).toEqual(['the sender died here']);
});
