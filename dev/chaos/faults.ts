import { addFault, clearFaults } from '../services/clients';
import type { Rng } from './rng';
import type { ChaosStack } from './stack';
import { FLAP_MODES } from './webhook-receiver';

/** How often each fault fires (0 turns it off), and when the one-off faults strike. */
export interface FaultPlan {
  workerKillEveryMs: number;
  workerTermEveryMs: number;
  pgTerminateEveryMs: number;
  servicesRestartEveryMs: number;
  apiRestartEveryMs: number;
  providerFaultEveryMs: number;
  /**
   * Restart PostgreSQL when each of these fractions of the orders has been submitted; with PostgreSQL HA,
   * SIGKILL its primary (a failover) and its standby in turn instead.
   */
  pgRestartsAt: number[];
  /** SIGKILL the Temporal server (and restart it on its SQLite file) at each of these fractions. */
  temporalKillsAt: number[];
  /** In cluster mode: SIGKILL a history, then a matching, then a frontend host, in turn, this often. */
  clusterHostKillEveryMs: number;
  /** SIGKILL the stream intake (and start it again) this often. */
  intakeKillEveryMs: number;
  /** SIGKILL the outbox relay, which also sends the webhooks (and start it again) this often. */
  relayKillEveryMs: number;
  /** SIGKILL the nats-server and start it again on the same port and store at each of these fractions. */
  natsRestartsAt: number[];
  /** The webhook receiver starts flapping (500s, hangs, down, answers lost) this often... */
  receiverFlapEveryMs: number;
  /** ...for about this long each time. */
  receiverFlapMs: number;
  /** How long a killed API, services process, PostgreSQL or Temporal stays down. */
  downtimeMs: number;
  /**
   * Only workers up this long are signalled. The pool takes a worker that dies
   * within 10 s of its start for a crash loop and backs off (up to 30 s), so
   * younger victims would leave the pool empty for long stretches.
   */
  workerMinUptimeMs: number;
}

export const DEFAULT_FAULT_PLAN: FaultPlan = {
  workerKillEveryMs: 6_000,
  workerTermEveryMs: 12_000,
  pgTerminateEveryMs: 8_000,
  servicesRestartEveryMs: 24_000,
  apiRestartEveryMs: 60_000,
  providerFaultEveryMs: 3_000,
  // Two of each per run: a lost workflow task, a dead history or a database restart mid-task met
  // more than once, at different moments of the sagas in flight.
  pgRestartsAt: [0.25, 0.65],
  temporalKillsAt: [0.4, 0.8],
  clusterHostKillEveryMs: 30_000,
  intakeKillEveryMs: 20_000,
  relayKillEveryMs: 20_000,
  natsRestartsAt: [0.3, 0.7],
  receiverFlapEveryMs: 20_000,
  receiverFlapMs: 8_000,
  downtimeMs: 1_500,
  workerMinUptimeMs: 10_000,
};

export const NO_FAULTS: FaultPlan = {
  workerKillEveryMs: 0,
  workerTermEveryMs: 0,
  pgTerminateEveryMs: 0,
  servicesRestartEveryMs: 0,
  apiRestartEveryMs: 0,
  providerFaultEveryMs: 0,
  pgRestartsAt: [],
  temporalKillsAt: [],
  clusterHostKillEveryMs: 0,
  intakeKillEveryMs: 0,
  relayKillEveryMs: 0,
  natsRestartsAt: [],
  receiverFlapEveryMs: 0,
  receiverFlapMs: 0,
  downtimeMs: 0,
  workerMinUptimeMs: 0,
};

/** Every interval of a plan multiplied by `scale` (a small run wants them closer together). */
export function scalePlan(plan: FaultPlan, scale: number): FaultPlan {
  const s = (ms: number) => Math.round(ms * scale);
  return {
    ...plan,
    workerKillEveryMs: s(plan.workerKillEveryMs),
    workerTermEveryMs: s(plan.workerTermEveryMs),
    pgTerminateEveryMs: s(plan.pgTerminateEveryMs),
    servicesRestartEveryMs: s(plan.servicesRestartEveryMs),
    apiRestartEveryMs: s(plan.apiRestartEveryMs),
    providerFaultEveryMs: s(plan.providerFaultEveryMs),
    clusterHostKillEveryMs: s(plan.clusterHostKillEveryMs),
    intakeKillEveryMs: s(plan.intakeKillEveryMs),
    relayKillEveryMs: s(plan.relayKillEveryMs),
    receiverFlapEveryMs: s(plan.receiverFlapEveryMs),
    receiverFlapMs: s(plan.receiverFlapMs),
  };
}

export interface FaultEvent {
  atMs: number;
  fault: string;
  detail?: string;
}

/**
 * Injects the faults of a plan while orders flow, each on its own timer with
 * jitter from the seeded RNG. Restarts of whole servers (PostgreSQL, Temporal,
 * the API, the services) take turns, so a restarting API never meets a database
 * that the driver itself has just stopped; kills of workers, connection resets
 * and provider faults strike at any moment.
 */
export class FaultInjector {
  readonly counts: Record<string, number> = {};
  /** Faults that could not be injected when their timer fired (e.g. no ready worker), by name. */
  readonly skipped: Record<string, number> = {};
  readonly events: FaultEvent[] = [];
  private running = false;
  private wake: (() => void) | undefined;
  private readonly stopped: Promise<void>;
  private readonly loops: Promise<void>[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private heavy: Promise<unknown> = Promise.resolve();
  private pgRestartsDone = 0;
  private temporalKillsDone = 0;
  private natsRestartsDone = 0;
  /** Ends a receiver flap under way when the faults stop. */
  private readonly flapAbort = new AbortController();

  constructor(
    private readonly stack: ChaosStack,
    private readonly plan: FaultPlan,
    private readonly rng: Rng,
    private readonly providerTimeoutMs: number,
    private readonly clock: () => number,
    private readonly log: (m: string) => void,
  ) {
    this.stopped = new Promise((resolve) => (this.wake = resolve));
  }

  start(): void {
    this.running = true;
    const p = this.plan;
    this.every('worker SIGKILL', p.workerKillEveryMs, (rng) => this.signalWorker(rng, 'SIGKILL'));
    this.every('worker SIGTERM', p.workerTermEveryMs, (rng) => this.signalWorker(rng, 'SIGTERM'));
    this.every('pg_terminate_backend', p.pgTerminateEveryMs, () => this.terminateConnections());
    this.every('services restart', p.servicesRestartEveryMs, () =>
      this.serialized(() => this.stack.killAndRestart(this.stack.services, 'SIGKILL', p.downtimeMs)),
    );
    this.every('api restart', p.apiRestartEveryMs, () =>
      this.serialized(() => this.stack.killAndRestart(this.stack.api, 'SIGKILL', p.downtimeMs)),
    );
    this.every('provider fault', p.providerFaultEveryMs, (rng) => this.providerFault(rng));
    // The stream doors: the intake and the relay die at any moment (what they hold is redelivered or
    // published again); the receiver flaps on its own timer.
    const { intake, relay, receiver } = this.stack;
    if (intake) this.every('intake SIGKILL', p.intakeKillEveryMs, () => this.stack.killAndRestart(intake, 'SIGKILL', p.downtimeMs));
    if (relay) this.every('relay SIGKILL', p.relayKillEveryMs, () => this.stack.killAndRestart(relay, 'SIGKILL', p.downtimeMs));
    if (receiver) {
      this.every('receiver flap', p.receiverFlapEveryMs, async (rng) => {
        const mode = rng.pick(FLAP_MODES);
        const ms = rng.jitter(p.receiverFlapMs, 0.5);
        // The flap goes on while the timer counts to the next one; one that finds a flap under way is skipped.
        this.fire(`receiver flap ${mode}`, async () => ((await receiver.flap(mode, ms, this.flapAbort.signal)) ? `for ${(ms / 1000).toFixed(1)} s` : false));
        return true;
      }, false);
    }
    if (this.stack.cluster) {
      // One host at a time, history, matching and frontend in turn; whole-server restarts wait for it.
      const order = ['history', 'matching', 'frontend'] as const;
      let next = 0;
      this.every('cluster host SIGKILL', p.clusterHostKillEveryMs, (rng) =>
        this.serialized(() => this.stack.killClusterHost(order[next++ % order.length]!, (xs) => rng.pick(xs), p.downtimeMs)),
      );
    }
  }

  /** Told how far the traffic is (0..1): the one-off faults strike at their fraction. */
  progress(fraction: number): void {
    if (!this.running) return;
    const p = this.plan;
    const due = (at: number[], done: number) => done < at.length && fraction >= at[done]!;
    if (due(p.pgRestartsAt, this.pgRestartsDone)) {
      this.pgRestartsDone += 1;
      if (this.stack.ha) {
        // A primary with a standby: the first kill is the primary's (a failover), the next the standby's, in turn.
        const role = this.pgRestartsDone % 2 === 1 ? 'primary' : 'standby';
        this.fire(`postgres ${role} SIGKILL`, () => this.serialized(() => this.stack.killPostgresNode(role, p.downtimeMs)));
      } else {
        this.fire('postgres restart', () =>
          this.serialized(() => this.stack.restartPostgres(p.downtimeMs)),
        );
      }
    }
    const nats = this.stack.nats;
    if (nats && due(p.natsRestartsAt, this.natsRestartsDone)) {
      this.natsRestartsDone += 1;
      this.fire('nats restart', () => this.serialized(() => this.stack.killAndRestart(nats, 'SIGKILL', p.downtimeMs)));
    }
    // In cluster mode the hosts are killed one by one instead (cluster host SIGKILL).
    const temporal = this.stack.temporal;
    if (temporal && due(p.temporalKillsAt, this.temporalKillsDone)) {
      this.temporalKillsDone += 1;
      this.fire('temporal SIGKILL', () =>
        this.serialized(() => this.stack.killAndRestart(temporal, 'SIGKILL', p.downtimeMs)),
      );
    }
  }

  /** Stops every timer, waits for the faults under way (a restart finishes), and clears provider faults. */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    this.flapAbort.abort();
    await Promise.all(this.loops);
    await Promise.all([...this.inFlight]);
    await Promise.all([
      clearFaults(this.stack.providerUrl).catch(() => undefined),
      clearFaults(this.stack.carrierUrl).catch(() => undefined),
    ]);
  }

  /** Each timer draws from its own stream, so one fault's timing does not shift another's choices. */
  private every(name: string, intervalMs: number, action: (rng: Rng) => Promise<boolean | string>, counted = true): void {
    if (!(intervalMs > 0)) return;
    const rng = this.rng.fork(name);
    const loop = (async () => {
      while (this.running) {
        const delay = rng.jitter(intervalMs);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([this.stopped, new Promise((r) => (timer = setTimeout(r, delay)))]);
        clearTimeout(timer);
        if (!this.running) return;
        if (counted) await this.run(name, () => action(rng));
        else await action(rng).catch(() => undefined);
      }
    })();
    this.loops.push(loop);
  }

  private fire(name: string, action: () => Promise<boolean | string>): void {
    const p = this.run(name, action);
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** Runs one injection; an action answers false (or throws) when there was nothing to hit. */
  private async run(name: string, action: () => Promise<boolean | string>): Promise<void> {
    const at = this.clock();
    try {
      const result = await action();
      if (result === false) {
        this.skipped[name] = (this.skipped[name] ?? 0) + 1;
        return;
      }
      const key = typeof result === 'string' && name === 'provider fault' ? `provider fault ${result.split(' ')[0]}` : name;
      this.counts[key] = (this.counts[key] ?? 0) + 1;
      this.events.push({ atMs: at, fault: name, detail: typeof result === 'string' ? result : undefined });
      this.log(`fault at ${(at / 1000).toFixed(1)} s: ${name}${typeof result === 'string' ? ` (${result})` : ''}`);
    } catch (err) {
      this.skipped[name] = (this.skipped[name] ?? 0) + 1;
      this.events.push({ atMs: at, fault: `${name} failed`, detail: (err as Error).message });
    }
  }

  /** Whole-server restarts take turns. */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.heavy.then(fn, fn);
    this.heavy = next.catch(() => undefined);
    return next;
  }

  private async signalWorker(rng: Rng, sig: NodeJS.Signals): Promise<boolean | string> {
    const pid = this.stack.pickWorker((xs) => rng.pick(xs), this.plan.workerMinUptimeMs);
    if (pid === undefined) return false;
    return this.stack.signalWorker(pid, sig) ? `pid ${pid}` : false;
  }

  private async terminateConnections(): Promise<boolean | string> {
    const n = await this.stack.terminateConnections();
    this.counts['pg connections terminated'] = (this.counts['pg connections terminated'] ?? 0) + n;
    return `${n} connections`;
  }

  private async providerFault(rng: Rng): Promise<boolean | string> {
    const { providerUrl, carrierUrl } = this.stack;
    const past = this.providerTimeoutMs + 1_500;
    const catalogue: [string, string, Record<string, unknown>][] = [
      [providerUrl, 'charges', { kind: 'error', path: '/charges', times: rng.int(1, 3) }],
      [providerUrl, 'charges', { kind: 'latency', path: '/charges', latency_ms: past, times: 1 }],
      [providerUrl, 'charges', { kind: 'drop', path: '/charges', times: 1 }],
      [providerUrl, 'charges', { kind: 'decline', path: '/charges', times: 1 }],
      [providerUrl, 'refunds', { kind: 'error', path: '/refunds', times: 2 }],
      [providerUrl, 'refunds', { kind: 'drop', path: '/refunds', times: 1 }],
      [carrierUrl, 'shipments', { kind: 'error', path: '/shipments', times: rng.int(1, 3) }],
      [carrierUrl, 'shipments', { kind: 'latency', path: '/shipments', latency_ms: past, times: 1 }],
      [carrierUrl, 'shipments', { kind: 'drop', path: '/shipments', times: 1 }],
      [carrierUrl, 'voids', { kind: 'error', path: '/shipments/void', times: 2 }],
    ];
    const [url, what, rule] = rng.pick(catalogue);
    await addFault(url, rule);
    return `${String(rule.kind)}:${what}${rule.times ? ` x${String(rule.times)}` : ''}`;
  }
}
