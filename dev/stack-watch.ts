import type { StackPart } from './stack';

/**
 * Watches the stack's PostgreSQL and Temporal while `npm run stack` waits for
 * Ctrl-C, and keeps the process alive while it does (a pending promise does
 * not: with its servers given by URL, the process would end once its last
 * connection went idle, leaving the rest running without it).
 *
 * It reports what happens: a part that stops answering, the process this stack
 * started for it ending (and how), a part answering again. A part this stack
 * started that stays down for `restartAfterMs` with nothing else serving its
 * address is started again, on the same port and state; one that someone else
 * brought back is left to them. A restart that fails is reported and tried again.
 */
export function watchStack(
  parts: StackPart[],
  log: (m: string) => void,
  opts: { intervalMs?: number; restartAfterMs?: number } = {},
): { stop(): void } {
  const intervalMs = opts.intervalMs ?? 2000;
  const restartAfterMs = opts.restartAfterMs ?? 5000;
  const state = new Map(parts.map((p) => [p.name, { up: true, downSince: 0, exitReported: false }]));
  let busy = false;
  const check = async (part: StackPart) => {
    const s = state.get(part.name)!;
    const ended = part.exit?.();
    if (ended && !s.exitReported) {
      s.exitReported = true;
      log(`${part.name}: the process this stack started has ended (${ended})`);
    }
    const error = await part.probe().then(
      () => undefined,
      (err: unknown) => (err as Error).message,
    );
    if (error === undefined) {
      if (!s.up) log(`${part.name}: answering again${ended ? ', served by a process this stack did not start' : ''}`);
      s.up = true;
      return;
    }
    if (s.up) {
      s.up = false;
      s.downSince = Date.now();
      log(`${part.name}: not answering (${error})`);
    }
    if (!part.restart || Date.now() - s.downSince < restartAfterMs) return;
    log(`${part.name}: down for ${Math.round((Date.now() - s.downSince) / 1000)} s; starting it again`);
    try {
      await part.restart();
      s.exitReported = false;
      s.up = true;
      log(`${part.name}: started again`);
    } catch (err) {
      s.downSince = Date.now();
      log(`${part.name}: could not start it again (${(err as Error).message}); trying again in ${restartAfterMs / 1000} s`);
    }
  };
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void Promise.all(parts.map(check)).finally(() => {
      busy = false;
    });
  }, intervalMs);
  return { stop: () => clearInterval(timer) };
}
