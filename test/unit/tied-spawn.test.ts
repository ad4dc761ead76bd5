/**
 * spawnTied: a child that does not outlive its parent even when the parent is SIGKILLed,
 * where an exit handler cannot run. Real processes: a Node parent starts `sleep`, the
 * test SIGKILLs the parent and watches the sleep's pid.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { waitFor } from '../../src/ports';
import { setprivPath } from '../../src/tied-spawn';
import { isRunning, killAll, untilGone } from '../helpers/processes';

const ROOT = path.resolve(__dirname, '../..');

/** A parent process that starts `sleep 600` (tied or not), prints its pid and waits. */
async function parentWithChild(tied: boolean): Promise<{ parent: ReturnType<typeof spawn>; child: number }> {
  const script = tied
    ? "const { spawnTied } = require('./src/tied-spawn'); const c = spawnTied('sleep', ['600'], { stdio: 'ignore' });"
    : "const { spawn } = require('node:child_process'); const c = spawn('sleep', ['600'], { stdio: 'ignore' });";
  const parent = spawn(process.execPath, ['-r', 'ts-node/register/transpile-only', '-e', `${script} console.log(c.pid); setInterval(() => {}, 1000);`], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const pid = await new Promise<number>((resolve, reject) => {
    let out = '';
    parent.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    parent.once('exit', (code) => reject(new Error(`the parent exited ${code} before starting its child`)));
  });
  return { parent, child: pid };
}

const onLinuxWithSetpriv = process.platform === 'linux' && setprivPath() ? describe : describe.skip;

onLinuxWithSetpriv('spawnTied', () => {
  const leftovers: number[] = [];
  afterAll(() => killAll(leftovers));

  test('the child is the program itself (setpriv execs it): its pid is the one the parent holds', async () => {
    const { parent, child } = await parentWithChild(true);
    leftovers.push(child);
    try {
      await waitFor('the child to be sleep itself', 5000, async () => {
        const program = fs.readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0')[0];
        if (program !== 'sleep') throw new Error(`the child is ${program}`);
      });
    } finally {
      parent.kill('SIGKILL');
    }
  });

  test('a SIGKILLed parent takes its tied child with it', async () => {
    const { parent, child } = await parentWithChild(true);
    leftovers.push(child);
    expect(isRunning(child)).toBe(true);
    parent.kill('SIGKILL');
    await untilGone(() => [child], 10_000);
  });

  test('without the tie the same child is orphaned and goes on running (what the tie is for)', async () => {
    const { parent, child } = await parentWithChild(false);
    leftovers.push(child);
    parent.kill('SIGKILL');
    await new Promise((r) => parent.once('exit', r));
    await new Promise((r) => setTimeout(r, 500));
    expect(isRunning(child)).toBe(true);
  });
});
