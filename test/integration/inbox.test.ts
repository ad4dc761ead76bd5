/**
 * sagaflow/inbox as a user of the toolkit meets it: a handler of their own (a
 * greetings table, no order in sight) in a schema of their own, processed
 * through processMessage on the real PostgreSQL. The message's record and its
 * effect commit together or not at all; a redelivery applies nothing twice.
 */
import { InvalidMessage, migrateInbox, processMessage, type InboxHandler } from '@sagaflow/toolkit/inbox';
import type { Tx } from '../../src/db/pool';
import { createTestSchema } from '../helpers/context';
import { fingerprint } from '../../packages/toolkit/src/ledger/fingerprint';

let schema: Awaited<ReturnType<typeof createTestSchema>>;

beforeAll(async () => {
  schema = await createTestSchema('inbox', { migrations: false });
  await migrateInbox(schema.db);
  await migrateInbox(schema.db); // twice: a second process starting
  await schema.db.query('CREATE TABLE greetings (id text PRIMARY KEY, name text NOT NULL, note text)');
});

afterAll(async () => {
  await schema?.drop();
});

interface Greeting {
  id?: string;
  name: string;
  note?: string;
  fail?: 'apply' | 'after';
}

let afterCalls: string[] = [];
let failAfter = 0;

function handler(source: string): InboxHandler<Greeting> {
  let n = 0;
  return {
    source,
    parse(body) {
      const text = Buffer.from(body).toString('utf8');
      let g: Greeting;
      try {
        g = JSON.parse(text) as Greeting;
      } catch {
        throw new InvalidMessage('not JSON');
      }
      if (typeof g.name !== 'string') throw new InvalidMessage('no name');
      return { payload: g, fingerprint: fingerprint(g), messageId: g.id };
    },
    newResourceId: () => `greeting-${++n}-${source}`,
    async apply(tx: Tx, g, id) {
      await tx.query('INSERT INTO greetings (id, name, note) VALUES ($1, $2, $3)', [id, g.name, g.note ?? null]);
      if (g.fail === 'apply') throw new Error('the effect failed after its insert');
    },
    async afterCommit(id, _g, claim) {
      afterCalls.push(`${id}:${claim}`);
      if (failAfter > 0) {
        failAfter -= 1;
        throw new Error('the after-commit work failed');
      }
    },
  };
}

const body = (g: Greeting) => new TextEncoder().encode(JSON.stringify(g));
const rows = async (source: string) =>
  (await schema.db.query<{ id: string; name: string }>('SELECT id, name FROM greetings WHERE id LIKE $1 ORDER BY id', [`%-${source}`])).rows;
const records = async (source: string) =>
  (await schema.db.query<{ message_id: string; resource_id: string }>('SELECT message_id, resource_id FROM inbox_messages WHERE source = $1', [source])).rows;

beforeEach(() => {
  afterCalls = [];
  failAfter = 0;
});

test('a message applies once; its redelivery is acked with the same resource and runs the after-commit work again', async () => {
  const h = handler('a');
  const first = await processMessage(schema.db, h, { messageId: 'm1', body: body({ name: 'Ada' }) }, 60_000);
  const again = await processMessage(schema.db, h, { messageId: 'm1', body: body({ name: 'Ada' }) }, 60_000);
  expect(first).toEqual({ kind: 'ack', resourceId: 'greeting-1-a', claim: 'new' });
  expect(again).toEqual({ kind: 'ack', resourceId: 'greeting-1-a', claim: 'duplicate' });
  expect(await rows('a')).toEqual([{ id: 'greeting-1-a', name: 'Ada' }]);
  expect(afterCalls).toEqual(['greeting-1-a:new', 'greeting-1-a:duplicate']);
});

test('the same ID in two sources is two messages', async () => {
  await processMessage(schema.db, handler('b1'), { messageId: 'same', body: body({ name: 'x' }) }, 60_000);
  await processMessage(schema.db, handler('b2'), { messageId: 'same', body: body({ name: 'x' }) }, 60_000);
  expect((await records('b1')).length + (await records('b2')).length).toBe(2);
});

test('the same ID with another body is a conflict naming the first resource; nothing applied', async () => {
  const h = handler('c');
  await processMessage(schema.db, h, { messageId: 'm', body: body({ name: 'Ada' }) }, 60_000);
  const v = await processMessage(schema.db, h, { messageId: 'm', body: body({ name: 'Grace' }) }, 60_000);
  expect(v).toEqual({
    kind: 'dead-letter',
    reason: 'conflict',
    resourceId: 'greeting-1-c',
    detail: 'message ID m was already processed with another payload (it created greeting-1-c)',
  });
  expect(await rows('c')).toEqual([{ id: 'greeting-1-c', name: 'Ada' }]);
});

test('an effect that fails rolls its record back with it: the retry applies it afresh', async () => {
  const h = handler('d');
  const v = await processMessage(schema.db, h, { messageId: 'm', body: body({ name: 'Ada', fail: 'apply' }) }, 60_000);
  expect(v).toEqual({ kind: 'retry', error: 'the effect failed after its insert' });
  expect(await records('d')).toEqual([]);
  expect(await rows('d')).toEqual([]);
  expect(afterCalls).toEqual([]);
});

test('after-commit work that fails leaves the record (retry); the redelivery runs it again and acks', async () => {
  const h = handler('e');
  failAfter = 1;
  const v1 = await processMessage(schema.db, h, { messageId: 'm', body: body({ name: 'Ada' }) }, 60_000);
  const v2 = await processMessage(schema.db, h, { messageId: 'm', body: body({ name: 'Ada' }) }, 60_000);
  expect([v1.kind, v2.kind]).toEqual(['retry', 'ack']);
  expect(await rows('e')).toHaveLength(1);
  expect(afterCalls).toEqual(['greeting-1-e:new', 'greeting-1-e:duplicate']);
});

test('data PostgreSQL refuses (a NUL byte the handler let through) is dead-lettered as unstorable, nothing written', async () => {
  const h = handler('f');
  const v = await processMessage(schema.db, h, { messageId: 'm', body: body({ name: 'Ada', note: 'a\u0000b' }) }, 60_000);
  expect(v).toMatchObject({ kind: 'dead-letter', reason: 'unstorable' });
  expect(await records('f')).toEqual([]);
});

test('a body the handler refuses, and an ID missing, too long or unstorable, are dead-lettered as invalid before any write', async () => {
  const h = handler('g');
  const verdicts = [
    await processMessage(schema.db, h, { messageId: 'm', body: new TextEncoder().encode('{') }, 60_000),
    await processMessage(schema.db, h, { body: body({ name: 'Ada' }) }, 60_000),
    await processMessage(schema.db, h, { messageId: 'x'.repeat(256), body: body({ name: 'Ada' }) }, 60_000),
    await processMessage(schema.db, h, { messageId: 'nul\u0000', body: body({ name: 'Ada' }) }, 60_000),
  ];
  expect(verdicts).toEqual([
    { kind: 'dead-letter', reason: 'invalid', detail: 'not JSON' },
    { kind: 'dead-letter', reason: 'invalid', detail: 'the message has no ID' },
    { kind: 'dead-letter', reason: 'invalid', detail: 'the message ID is longer than 255 characters' },
    { kind: 'dead-letter', reason: 'invalid', detail: 'the message ID carries text PostgreSQL cannot store' },
  ]);
  expect(await records('g')).toEqual([]);
});

test('the same new message processed by two consumers at once applies once', async () => {
  const h = handler('h');
  const vs = await Promise.all([1, 2, 3, 4].map(() => processMessage(schema.db, h, { messageId: 'race', body: body({ name: 'Ada' }) }, 60_000)));
  expect(vs.map((v) => (v.kind === 'ack' ? v.claim : v.kind)).sort()).toEqual(['duplicate', 'duplicate', 'duplicate', 'new']);
  expect(await rows('h')).toHaveLength(1);
});
