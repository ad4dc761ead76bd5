import { ConfigError, StartupError, UsageError } from './config';

/** How every command (bin/*) runs: its exit codes, its usage, its stop signals. */

/**
 * Runs a command's main. `--help` or `-h` prints its usage and exits 0; a
 * wrong flag or argument prints what is wrong and the usage, exit 2; a bad
 * configuration prints every bad variable at once, exit 2; a start-up failure
 * that names its cause prints that line, with its own exit code (ExitCode); anything
 * else, its stack, exit 1.
 */
export function runMain(usage: string, main: () => Promise<number | void>): void {
  const text = usageAsInvoked(usage.trim());
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${text}\n`);
    process.exit(0);
  }
  main().then(
    (code) => process.exit(code ?? 0),
    (err: unknown) => {
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(2);
      }
      const code = (err as { code?: unknown } | null)?.code;
      if (err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'))) {
        process.stderr.write(`${(err as Error).message}\n\n${text}\n`);
        process.exit(2);
      }
      if (err instanceof StartupError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(err.exitCode);
      }
      // Something thrown that is not an Error (a rejected promise with no reason) still says what failed.
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : `failed: ${String(err)} (no error was given)`}\n`);
      process.exit(1);
    },
  );
}

/**
 * Resolves on the first SIGINT or SIGTERM, so a long-running command can stop
 * what it started in order (workers, the API, Temporal, then its PostgreSQL) and
 * exit 0. The embedded PostgreSQL package installs its own handlers for those
 * signals, which stop the database first and exit 130 before the rest has
 * stopped; they are taken off here. A second signal exits at once.
 */
export function untilStopSignal(): Promise<NodeJS.Signals> {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) embeddedPostgresExitHook()?.unhookEvent?.(signal);
  return new Promise((resolve) => {
    const first = (signal: NodeJS.Signals) => {
      process.removeListener('SIGINT', first);
      process.removeListener('SIGTERM', first);
      const again = () => process.exit(130);
      process.once('SIGINT', again);
      process.once('SIGTERM', again);
      resolve(signal);
    };
    process.on('SIGINT', first);
    process.on('SIGTERM', first);
  });
}

/** The exit hook the embedded PostgreSQL package loaded, if this process loaded it (a development dependency). */
function embeddedPostgresExitHook(): { unhookEvent?: (event: string) => void } | undefined {
  try {
    return require.cache[require.resolve('async-exit-hook')]?.exports as { unhookEvent?: (event: string) => void } | undefined;
  } catch {
    return undefined;
  }
}

/**
 * A command's usage as it was started: its text says `npm run worker -- [flags]` (the repository's
 * way); started through the `sagaflow` executable (bin/sagaflow.ts), the first line says
 * `sagaflow worker [flags]`.
 */
export function usageAsInvoked(usage: string, invokedAs = process.env.SAGAFLOW_INVOKED_AS): string {
  if (invokedAs !== 'sagaflow') return usage;
  return usage.replace(/^usage: npm run (\S+)(?: -- | \[-- |\b)/, (_m, name: string) => {
    const rest = _m.slice(`usage: npm run ${name}`.length);
    return `usage: sagaflow ${name}${rest === ' -- ' ? ' ' : rest === ' [-- ' ? ' [' : ''}`;
  });
}
