/** Waiting on durable state in tests: bounded by a number of rounds, never asserted on time. */

/** Polls `read` until `pred` holds, every `everyMs`, at most `rounds` times; a failed read counts as a round. */
export async function until<T>(read: () => Promise<T>, pred: (v: T) => boolean, what: string, rounds = 1200, everyMs = 100): Promise<T> {
  let last: T | undefined;
  let lastError: unknown;
  for (let i = 0; i <= rounds; i++) {
    try {
      last = await read();
      lastError = undefined;
      if (pred(last)) return last;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`never reached: ${what} (last: ${lastError ? String(lastError) : JSON.stringify(last)})`);
}
