/**
 * Statements sent with BEGIN or COMMIT in one message, their parameters written in as literals
 * (inlineStatement): against real PostgreSQL, an inlined statement must give what the same
 * statement with parameters gives, for every kind of value pg sends; `$n` is replaced only where it
 * is a parameter; what cannot be inlined exactly is not; and inTransaction's 'lazily' BEGIN and
 * commitWith keep the transaction whole: one message where they can, every row or none.
 */
import { commitWith, inTransaction, type Db, type Tx } from '../../packages/toolkit/src/db';
import { inlineStatement } from '../../packages/toolkit/src/inline-sql';
import { createTestSchema } from '../helpers/context';
import { countingMessages } from '../helpers/pg-messages';

let db: Db;
let drop: () => Promise<void>;

beforeAll(async () => {
  ({ db, drop } = await createTestSchema('inlinesql'));
  await db.query(`CREATE TABLE inline_rows (id text PRIMARY KEY, n int, doc jsonb, tags text[], raw bytea)`);
});
afterAll(async () => {
  await drop?.();
});

const quote = (v: string) => `'${v.replace(/'/g, "''")}'`;

describe('inlineStatement', () => {
  test.each([
    ['text with quotes, unicode and an emoji', `SELECT $1::text AS v`, ["it's \"q\" — ünï 🦜"]],
    ['an integer into int arithmetic', `SELECT $1::int + 1 AS v`, [41]],
    ['a number without a cast', `SELECT $1 AS v`, [12.5]],
    ['a boolean', `SELECT $1::boolean AS v`, [true]],
    ['null, typed by its context', `SELECT $1::jsonb IS NULL AS v`, [null]],
    ['an object as jsonb', `SELECT $1::jsonb AS v`, [{ a: [1, 'two', { three: null }], "b'": 'x' }]],
    ['arrays for unnest', `SELECT array_agg(s || ':' || q ORDER BY s) AS v FROM unnest($1::text[], $2::int[]) AS r (s, q)`, [['a', "b'c", 'd e'], [1, 2, 3]]],
    ['a Date', `SELECT $1::timestamptz = '2026-01-02T03:04:05.678Z'::timestamptz AS v`, [new Date('2026-01-02T03:04:05.678Z')]],
    ['a parameter used twice, and $10 after $1', `SELECT concat($1::text, $10::text, $2::int, $3::int, $4::int, $5::int, $6::int, $7::int, $8::int, $9::int, $1::text) AS v`, ['x', 2, 3, 4, 5, 6, 7, 8, 9, 'ten']],
  ] as [string, string, unknown[]][])('%s: the same answer as with parameters', async (_name, text, values) => {
    const inlined = inlineStatement({ text, values }, quote);
    expect(inlined).toBeDefined();
    expect(inlined).not.toMatch(/\$\d/);
    const [withParams, withLiterals] = [(await db.query(text, values)).rows, (await db.query(inlined!)).rows];
    expect(withLiterals).toEqual(withParams);
  });

  test('$n is a parameter only outside strings, quoted names, comments and dollar quotes, and not inside a name', async () => {
    const text = `SELECT '$1' AS "$1", $$ $1 $$ AS d, $tag$ $1 $tag$ AS t, /* $1 /* $1 */ */ $1::text AS p -- $1
      , 1 AS a$1`;
    const inlined = inlineStatement({ text, values: ['x'] }, quote)!;
    expect(inlined).toBe(text.replace('$1::text', "'x'::text"));
    expect((await db.query(inlined)).rows).toEqual([{ $1: '$1', d: ' $1 ', t: ' $1 ', p: 'x', a$1: 1 }]);
  });

  test.each([
    ['a Buffer (pg sends it as binary)', `SELECT $1::bytea`, [Buffer.from([0, 1])]],
    ['text with a NUL (refused as a parameter; cut short in a simple-protocol message)', `SELECT $1::text`, ['a\u0000b']],
    ['a backslash anywhere in the statement', `SELECT E'\\n' || $1`, ['x']],
    ['a parameter beyond the values', `SELECT $2::text`, ['x']],
    ['$0', `SELECT $0::text`, ['x']],
    ['a string that never closes', `SELECT 'open $1`, ['x']],
    ['a comment that never closes', `SELECT $1 /* open`, ['x']],
    ['a dollar quote that never closes', `SELECT $q$ open $1`, ['x']],
  ])('not inlined: %s', (_name, text, values) => {
    expect(inlineStatement({ text, values }, quote)).toBeUndefined();
  });
});

describe("inTransaction's lazy BEGIN and commitWith", () => {
  let messages: ReturnType<typeof countingMessages>;
  const row = async (id: string) => (await db.query('SELECT id, n, doc, tags FROM inline_rows WHERE id = $1', [id])).rows[0];
  const insert = (tx: Tx, id: string, extra: unknown = null) =>
    tx.query('INSERT INTO inline_rows (id, n, doc, tags) VALUES ($1, $2, $3, $4) RETURNING id', [id, 7, { extra }, ['t']]);

  beforeAll(() => {
    messages = countingMessages(db);
  });
  beforeEach(() => messages.reset());

  test('BEGIN goes with the first statement and COMMIT with the last: two messages for two statements, both rows kept', async () => {
    const answer = await inTransaction(
      db,
      async (tx) => {
        const first = await insert(tx, 'lazy-a');
        await commitWith(tx, { text: 'INSERT INTO inline_rows (id, n) VALUES ($1, $2)', values: ['lazy-b', 8] });
        return first.rows;
      },
      { begins: 'lazily', commits: true },
    );
    expect(answer).toEqual([{ id: 'lazy-a' }]);
    expect(messages.sent()).toBe(2);
    expect(await row('lazy-a')).toEqual({ id: 'lazy-a', n: 7, doc: { extra: null }, tags: ['t'] });
    expect(await row('lazy-b')).toMatchObject({ id: 'lazy-b', n: 8 });
  });

  test('a failure after the first statement rolls it back: it ran inside the transaction', async () => {
    await expect(
      inTransaction(
        db,
        async (tx) => {
          await insert(tx, 'lazy-c');
          throw new Error('effect failed');
        },
        { begins: 'lazily', commits: true },
      ),
    ).rejects.toThrow('effect failed');
    expect(await row('lazy-c')).toBeUndefined();
  });

  test('a first statement that cannot be inlined goes after a BEGIN of its own, in the transaction all the same', async () => {
    await expect(
      inTransaction(
        db,
        async (tx) => {
          await tx.query('INSERT INTO inline_rows (id, raw) VALUES ($1, $2)', ['lazy-e', Buffer.from([0, 1, 2])]);
          throw new Error('after the fallback');
        },
        { begins: 'lazily' },
      ),
    ).rejects.toThrow('after the fallback');
    expect(messages.sent()).toBe(3); // BEGIN, the statement, ROLLBACK
    expect(await row('lazy-e')).toBeUndefined();
  });

  test('a last statement with a NUL in its text value is sent with parameters: PostgreSQL refuses it, and nothing is committed', async () => {
    const err = await inTransaction(
      db,
      async (tx) => {
        await insert(tx, 'lazy-f');
        await commitWith(tx, { text: 'INSERT INTO inline_rows (id) VALUES ($1)', values: ['nul\u0000here'] });
      },
      { begins: 'lazily', commits: true },
    ).catch((e: unknown) => e as { code?: string });
    expect(err).toMatchObject({ code: '22021' });
    expect(await row('lazy-f')).toBeUndefined();
  });

  test('a multi-statement first query answers with every result but BEGIN', async () => {
    const results = await inTransaction(db, async (tx) => tx.query('SELECT 1 AS a; SELECT 2 AS b'), { begins: 'lazily' });
    expect((results as unknown as { rows: unknown[] }[]).map((r) => r.rows)).toEqual([[{ a: 1 }], [{ b: 2 }]]);
  });
});
