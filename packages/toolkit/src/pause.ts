/**
 * A wait that can be cut short: a polling loop pauses between rounds with `pause(ms)`,
 * and `wake()` ends the current pause at once (new work arrived, or the loop is stopping).
 */
export function wakeablePause(): { pause(ms: number): Promise<void>; wake(): void } {
  let wake: (() => void) | undefined;
  return {
    pause: (ms) =>
      new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      }),
    wake: () => wake?.(),
  };
}
