/**
 * Readiness: named checks run side by side, each bounded by a timeout, so a
 * hung dependency answers "not ready" instead of hanging the probe. A check
 * with its own deadline (a gRPC call) should set it below the timeout, so it
 * ends by itself rather than going on in the background. A Temporal call can
 * still outlive the timeout: the SDK's retries notice the deadline only at the
 * next attempt, up to one backoff (at most 5 s) later. Closing the connection
 * meanwhile is safe only on a connection built with clientConnectionOptions()
 * (src/temporal-connect.ts).
 */
export type Checks = Record<string, () => Promise<unknown>>;

export interface Readiness {
  ready: boolean;
  /** 'ok', or what went wrong, per check. */
  checks: Record<string, string>;
}

export async function checkReadiness(checks: Checks, timeoutMs = 2000): Promise<Readiness> {
  const results = await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        const running = check();
        // A check that loses the race may still fail later: that must not be an unhandled rejection.
        running.catch(() => undefined);
        await Promise.race([running, timeout]);
        return [name, 'ok'] as const;
      } catch (err) {
        return [name, err instanceof Error ? err.message : String(err)] as const;
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  const map = Object.fromEntries(results);
  return { ready: results.every(([, v]) => v === 'ok'), checks: map };
}
