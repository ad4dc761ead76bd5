import { ConfigError, StartupError } from '../src/config';

/** Runs a command's main, turning a bad configuration into a one-screen message and exit 2. */
export function runMain(main: () => Promise<number | void>): void {
  main().then(
    (code) => process.exit(code ?? 0),
    (err: unknown) => {
      if (err instanceof ConfigError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(2);
      }
      if (err instanceof StartupError) {
        process.stderr.write(`${err.message}\n`);
        process.exit(1);
      }
      // Something thrown that is not an Error (a rejected promise with no reason) still says what failed.
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : `failed: ${String(err)} (no error was given)`}\n`);
      process.exit(1);
    },
  );
}
