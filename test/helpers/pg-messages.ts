import type { Pool } from 'pg';

/**
 * Counts the messages a pool's clients send from now on (each query() call is one): for tests of
 * how many round trips a transaction takes. Wraps each client as the pool hands it out.
 */
export function countingMessages(db: Pool): { sent: () => number; reset: () => void } {
  let n = 0;
  const wrapped = new WeakSet<object>();
  db.on('acquire', (client) => {
    if (wrapped.has(client)) return;
    wrapped.add(client);
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...a: unknown[]) => {
      n++;
      return query(...a);
    };
  });
  return { sent: () => n, reset: () => (n = 0) };
}
