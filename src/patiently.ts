/**
 * Runs `attempt` until it succeeds, waiting between tries (0.5 s doubling to 5 s) and
 * telling `log` each time, until `signal` aborts. For a process's start-up against a
 * dependency that is down or restarting (Temporal, NATS JetStream): the process comes
 * up with it instead of exiting.
 */
export async function patiently<T>(
  what: string,
  attempt: () => Promise<T>,
  opts: { log: (line: Record<string, unknown>) => void; signal?: AbortSignal },
): Promise<T> {
  const { signal } = opts;
  for (let n = 1; ; n++) {
    if (signal?.aborted) throw new Error(`stopped waiting for ${what} (${String(signal.reason)})`);
    try {
      return await attempt();
    } catch (err) {
      if (signal?.aborted) throw err;
      const delayMs = startupBackoffMs(n);
      opts.log({ msg: `${what} unreachable; retrying`, attempt: n, delayMs, error: (err as Error).message });
      await sleepUnlessAborted(delayMs, signal);
    }
  }
}

/** The wait after failed try `n` of a dependency at start-up: 0.5 s doubling to 5 s. */
export const startupBackoffMs = (n: number): number => Math.min(5000, 500 * 2 ** Math.min(n - 1, 4));

/** Waits `ms`, or less: an abort ends the wait at once, not at the next attempt. */
export function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
