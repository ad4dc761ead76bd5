import { execFile } from 'node:child_process';

/** Runs the amtool the test setup fetched (npm run tools:install): its exit code and what it printed. */
export function amtool(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const bin = process.env.SAGAFLOW_AMTOOL;
  if (!bin) throw new Error('no amtool: the test setup fetches one (npm run tools:install)');
  return new Promise((resolve) => {
    execFile(bin, args, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout: stdout.trim(), stderr: stderr.trim() }),
    );
  });
}
