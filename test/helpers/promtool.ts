import { execFile } from 'node:child_process';

/** What `promtool check metrics` says of a /metrics page: '' when it finds nothing wrong. */
export async function promtoolCheckMetrics(text: string): Promise<string> {
  return promtool(['check', 'metrics'], text);
}

/** Runs the promtool the test setup fetched (npm run tools:install); its output, '' if silent. */
export function promtool(args: string[], stdin?: string): Promise<string> {
  const bin = process.env.SAGAFLOW_PROMTOOL;
  if (!bin) throw new Error('no promtool: the test setup fetches one (npm run tools:install)');
  return new Promise((resolve) => {
    const child = execFile(bin, args, (err, stdout, stderr) => resolve(`${stdout}${stderr}`.trim() || (err ? String(err) : '')));
    child.stdin!.end(stdin ?? '');
  });
}
