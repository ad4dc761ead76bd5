import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const LOCK = path.join(ROOT, '.dist-lock');

/**
 * Holds the repository's dist/ for one test file at a time. `npm run build` (and `npm pack`,
 * whose prepack builds) first removes what dist/ holds: two test files building at once, or
 * one building while another runs what the last build made, saw files vanish mid-way
 * ("chmod: cannot access 'dist/bin/sagaflow.js'"). A lock left by a process that died is
 * taken over. Resolves to the release.
 */
export async function holdDist(): Promise<() => void> {
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      fs.writeFileSync(path.join(LOCK, 'pid'), String(process.pid));
      return () => fs.rmSync(LOCK, { recursive: true, force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(fs.readFileSync(path.join(LOCK, 'pid'), 'utf8').trim() || NaN);
      if (Number.isInteger(holder) && !alive(holder)) fs.rmSync(LOCK, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, 250));
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
