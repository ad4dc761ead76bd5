/**
 * `npm run relay` as an operator runs it: the real process on a database of its
 * own (it migrates it) and a nats-server of this test's own. An order change's
 * event reaches SAGAFLOW_ORDER_EVENTS and the client's webhook endpoint, signed;
 * `lag` reads zero after; SIGKILLed with events waiting, the next relay sends them.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from '../../dev/nats';
import { createApiClient } from '../../src/api/auth';
import { migrate } from '../../src/db/migrate';
import { createPool, type Db } from '../../src/db/pool';
import { createEndpoint } from '../../src/webhooks/endpoints';
import { parseSealingKey, verify } from '../../src/webhooks/signing';
import { createTestDatabase } from '../helpers/context';
import { startEntry } from '../helpers/processes';
import { placeClientOrder } from '../helpers/client-orders';
import { until } from '../helpers/until';
import { startBeforeJetStream } from '../helpers/stream-faults';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
let nats: NatsServer;
let nc: NatsConnection;
let database: Awaited<ReturnType<typeof createTestDatabase>>;
let db: Db;
let receiver: http.Server;
const got: { id: string; timestamp: string; signature: string; body: string }[] = [];
const keyBase64 = randomBytes(32).toString('base64');
const children: ChildProcess[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  database = await createTestDatabase('relay_process');
  await migrate(database.url);
  db = createPool({ connectionString: database.url, max: 2 });
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      got.push({ id: String(req.headers['webhook-id']), timestamp: String(req.headers['webhook-timestamp']), signature: String(req.headers['webhook-signature']), body });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  receiver?.closeAllConnections();
  await new Promise((r) => receiver?.close(r));
  await nc?.close();
  await db?.end();
  await nats?.stop();
  await database?.drop();
});

const env = () => ({ ...process.env, DATABASE_URL: database.url, NATS_URL: nats.url, WEBHOOK_SECRETS_KEY: keyBase64, WEBHOOK_ALLOW_PRIVATE_URLS: 'true' });

async function startRelay(): Promise<ChildProcess> {
  const { child } = await startEntry('bin/relay.ts', env(), 'relay publishing');
  children.push(child);
  return child;
}

const lag = async () => (await run(process.execPath, ['-r', 'ts-node/register/transpile-only', 'bin/relay.ts', 'lag'], { cwd: ROOT, env: env() })).stdout.trim();

const place = (clientId: string, customerId: string) => placeClientOrder(db, clientId, customerId);

const streamCount = async () => (await (await jetstreamManager(nc)).streams.info('SAGAFLOW_ORDER_EVENTS')).state.messages;

test('the relay process publishes events and sends webhooks; SIGKILLed with events waiting, the next one sends them', async () => {
  const client = await createApiClient(db, 'relay-proc');
  const endpoint = await createEndpoint(db, {
    clientId: client.id,
    url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`,
    sealingKey: parseSealingKey(keyBase64),
    allowPrivate: true,
  });
  const first = await startRelay();
  const a = await place(client.id, 'relay-a');
  await until(streamCount, (n) => n === 1, 'one event in the stream');
  await until(async () => got.length, (n) => n === 1, 'one webhook');
  expect(JSON.parse(got[0]!.body)).toMatchObject({ type: 'io.sagaflow.order.created.v1', subject: a });
  expect(verify(endpoint.secret, got[0]!, got[0]!.body)).toBe(true);
  expect(await lag()).toBe('0\t0');

  first.kill('SIGKILL');
  await new Promise((r) => first.once('exit', r));
  const b = await place(client.id, 'relay-b');
  expect((await lag()).split('\t')[0]).toBe('1');
  const second = await startRelay();
  await until(streamCount, (n) => n === 2, 'the waiting event published');
  await until(async () => got.length, (n) => n === 2, 'its webhook');
  expect(JSON.parse(got[1]!.body)).toMatchObject({ subject: b });
  second.kill('SIGTERM');
  expect(await new Promise<number | null>((r) => second.once('exit', (c) => r(c)))).toBe(0);
}, 180_000);

test('a NATS without JetStream yet (just restarted, a cluster electing): the relay waits instead of exiting, and publishes once JetStream answers', async () => {
  const client = await createApiClient(db, 'relay-late-js');
  const c = await place(client.id, 'relay-late-js');
  const { child, out, nats: late } = await startBeforeJetStream('bin/relay.ts', env());
  children.push(child);
  try {
    expect(child.exitCode).toBeNull();
    const lateNc = await connect({ servers: late.url });
    try {
      await until(async () => out().includes('relay publishing'), (v) => v, 'the relay to start publishing');
      const jsm = await jetstreamManager(lateNc);
      await until(async () => (await jsm.streams.info('SAGAFLOW_ORDER_EVENTS').catch(() => undefined))?.state.messages ?? 0, (n) => n >= 1, 'the waiting event published');
      const sm = await jsm.streams.getMessage('SAGAFLOW_ORDER_EVENTS', { seq: 1 });
      expect(JSON.parse(sm!.string())).toMatchObject({ type: 'io.sagaflow.order.created.v1', subject: c });
    } finally {
      await lateNc.close();
    }
    child.kill('SIGTERM');
    expect(await new Promise<number | null>((r) => child.once('exit', (code) => r(code)))).toBe(0);
  } finally {
    await late.stop();
  }
}, 120_000);
