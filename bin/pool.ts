import { type ChildProcess } from 'node:child_process';
import { runMain } from '../src/run-main';
import { entryPoint } from '../src/paths';
import { spawnTied } from '../src/tied-spawn';
import { createLogger, lineLogger } from '../src/observability/log';
import { QUEUE_ROLES, type QueueRole } from '../workflows/order/queues';

/**
 * `npm run pool -- workflows=1 payments=3 shipping=2`: N worker processes per
 * task queue (1 each by default). A process that dies is restarted with backoff;
 * SIGTERM/SIGINT is passed on to every worker, which drain and exit, then the
 * pool exits 0. Other flags (--concurrency, --payments-per-second) go to each worker.
 * Workers never outlive the pool: if the pool itself is killed (SIGKILL, the OOM
 * killer) the kernel sends each worker SIGTERM, so they drain and exit instead of
 * polling on unsupervised and holding the metrics ports a restarted pool needs.
 */
interface Slot {
  role: QueueRole;
  index: number;
  child?: ChildProcess;
  restarts: number;
  startedAt: number;
  metricsPort?: number;
}

const log = lineLogger(createLogger({ service: 'sagaflow-pool', level: process.env.LOG_LEVEL || 'info' }));

const USAGE = `usage: npm run pool -- [ROLE=N ...] [worker flags]

N worker processes per task queue (ROLE: workflows, orders, inventory, payments,
shipping; one process per role if none is given). Other flags go to every
worker (npm run worker -- --help). A process that exits is restarted with
backoff; each serves /metrics on METRICS_PORT + its slot. SIGTERM or SIGINT is
passed to every worker; the pool exits 0 once all have drained.`;

runMain(USAGE, async () => {
  const args = process.argv.slice(2);
  const counts = new Map<QueueRole, number>();
  const passThrough: string[] = [];
  for (const a of args) {
    const m = /^([a-z]+)=(\d+)$/.exec(a);
    if (m && (QUEUE_ROLES as readonly string[]).includes(m[1]!)) counts.set(m[1] as QueueRole, Number(m[2]));
    else passThrough.push(a);
  }
  const plan = counts.size ? counts : new Map(QUEUE_ROLES.map((r) => [r, 1]));
  const slots: Slot[] = [...plan].flatMap(([role, n]) =>
    Array.from({ length: n }, (_, index) => ({ role, index, restarts: 0, startedAt: 0 })),
  );
  let stopping = false;
  // Each process serves /metrics on its own port: METRICS_PORT (9464) + its slot number; 0 lets each pick a free one.
  const metricsBase = process.env.METRICS_PORT === '0' ? 0 : Number(process.env.METRICS_PORT || 9464);
  slots.forEach((s, i) => (s.metricsPort = metricsBase === 0 ? 0 : metricsBase + i));

  const start = (slot: Slot) => {
    slot.startedAt = Date.now();
    const child = spawnTied(process.execPath, [...entryPoint('worker'), '--queues', slot.role, '--metrics-port', String(slot.metricsPort), ...passThrough], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: process.env,
      deathSignal: 'TERM',
    });
    slot.child = child;
    log({ msg: 'worker started', role: slot.role, index: slot.index, pid: child.pid });
    child.on('exit', (code, signal) => {
      log({ msg: 'worker exited', role: slot.role, index: slot.index, pid: child.pid, code, signal });
      slot.child = undefined;
      if (stopping) return;
      // A worker that keeps failing at once backs off, up to 30 s between tries. One killed from
      // outside (a signal, or a graceful stop) is restarted at once: it was not failing.
      const failedFast = signal === null && code !== 0 && Date.now() - slot.startedAt < 10_000;
      slot.restarts = failedFast ? slot.restarts + 1 : 0;
      const delay = Math.min(30_000, 500 * 2 ** slot.restarts);
      setTimeout(() => !stopping && start(slot), delay);
    });
  };
  slots.forEach(start);
  log({ msg: 'pool up', workers: slots.map((s) => `${s.role}#${s.index}`) });

  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  stopping = true;
  const alive = slots.flatMap((s) => (s.child ? [s.child] : []));
  log({ msg: 'pool stopping', workers: alive.length });
  await Promise.all(
    alive.map(
      (c) =>
        new Promise<void>((resolve) => {
          c.once('exit', () => resolve());
          c.kill('SIGTERM');
        }),
    ),
  );
  log({ msg: 'pool stopped' });
  return 0;
});

