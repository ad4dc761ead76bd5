import { setMaxListeners } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { createApiClient } from '../../src/api/auth';
import { listDeadLetters, type InboxTopology } from '@sagaflow/toolkit/inbox';
import { auditBooks, type AuditReport } from '../../src/orders/audit';
import { reconcileSimulatedServices } from '../services/reconcile';
import { orderIntakeTopology } from '../../src/orders/intake';
import { ORDER_EVENTS } from '../../src/orders/relay';
import { orderWorkflowId } from '../../workflows/order/ids';
import { CurrentStepKey } from '../../workflows/order/search-attributes';
import { DEFAULT_FAULT_PLAN, FaultInjector, NO_FAULTS, scalePlan, type FaultEvent, type FaultPlan } from './faults';
import { Rng } from './rng';
import { checkSagaAgainstLedger, type LedgerRowForAudit, type OrderForAudit, type SagaAccount } from './saga-audit';
import { ChaosStack, type CrashRecord } from './stack';
import { eventCounterTopology, EVENTS_SEEN_DDL, NOTIFICATIONS_DEAD_LETTER_STREAM, ORDER_STREAM_DUPLICATE_WINDOW_MS } from './doors';
import { checkOrderEvents, checkSeenOnce, checkStreamMessages, checkWebhooks, type DeliveryRow, type EventForAudit, type SeenRow } from './stream-audit';
import { assignDoors, driveTraffic, planOrders, type OrderOutcome, type StreamTrafficStats, type TrafficStats } from './traffic';
import type { ReceiverStats } from './webhook-receiver';

export interface ChaosOptions {
  /** Orders to send (200). */
  orders?: number;
  /** Sagas in flight at once (20). */
  concurrency?: number;
  /** Worker processes in the pool, each polling every queue (2). */
  workers?: number;
  /** Seeds the order mix, cancel moments and fault choices (a random one is printed otherwise). */
  seed?: number;
  /** False: a baseline run with no fault at all. */
  faults?: boolean;
  /**
   * Multiplies every fault interval. 'auto' (the default) scales them to the
   * expected length of the traffic (orders / rate, against two minutes, between
   * 0.25 and 1), so a short run still meets every fault.
   */
  faultScale?: number | 'auto';
  /** Overrides parts of the (scaled) fault plan. */
  faultPlan?: Partial<FaultPlan>;
  /** Orders started per second at most (2), so faults strike while orders flow. */
  ratePerSecond?: number;
  /** Everything, start-up to clean-up, ends by then (15 minutes). */
  deadlineMs?: number;
  /** How long to wait after the traffic for every order to leave `pending` (3 minutes). */
  settleTimeoutMs?: number;
  /** The call timeout the workers use against the provider and carrier (2500 ms). */
  providerTimeoutMs?: number;
  /** Keep the run's logs after it ends (true); the databases are always removed unless keepState. */
  keepLogs?: boolean;
  keepState?: boolean;
  /** A prebuilt workflow bundle to use instead of building one for the run. */
  workflowBundle?: string;
  /** Progress lines; silent by default. */
  log?: (m: string) => void;
  /** Aborting ends the run early (Ctrl-C): it still cleans up and reports. */
  signal?: AbortSignal;
  /** 'cluster': a self-hosted Temporal cluster whose history, matching and frontend hosts are killed in turn. */
  temporal?: 'dev' | 'cluster';
  /**
   * 'ha': sagaflow's database as a primary with a synchronous standby under pg_auto_failover; the
   * PostgreSQL restarts become SIGKILLs of the primary (a failover) and of the standby, in turn.
   */
  postgres?: 'embedded' | 'ha';
  /**
   * The stream doors (true): NATS, the intake, the relay, the event consumers and a webhook
   * receiver; a share of the orders arrive through the stream. False: the HTTP API alone.
   */
  streams?: boolean;
  /** The share of the orders (those not planned to be cancelled: a cancel needs the API) published to the stream (2/3). */
  streamShare?: number;
}

export interface StuckOrder {
  orderId: string;
  status: string;
  /** The saga as Temporal has it: RUNNING, COMPLETED, ..., or 'no workflow'. */
  saga: string;
  currentStep?: string;
  kind?: string;
  idempotencyKey?: string;
  post?: string;
  cancel?: string;
}

export interface ChaosReport {
  ok: boolean;
  seed: number;
  faultsEnabled: boolean;
  /** The Temporal the run used: the dev server, or a self-hosted cluster whose hosts the faults kill. */
  temporal: 'dev' | 'cluster';
  /** sagaflow's database: one embedded PostgreSQL, or a primary and a synchronous standby under pg_auto_failover. */
  postgres: 'embedded' | 'ha';
  /** The stream doors ran (NATS, the intake, the relay, the consumers, the webhook receiver). */
  streams: boolean;
  /** The fault plan as run: intervals after scaling. */
  faultPlan: FaultPlan;
  /** Orders planned, orders the API answered 201 for, order rows in the database. */
  /**
   * Orders planned; the API's 201s; POSTs that never got one (abandoned: the
   * client sent one and walked away on failure); order rows; rows whose POST
   * never got its 201 (committed before the request died).
   */
  orders: { planned: number; created: number; postGaveUp: number; abandoned: number; inDatabase: number; unanswered: number };
  byStatus: Record<string, number>;
  /** Whole run, traffic phase (first POST to last submission) and settle phase, in ms. */
  durationMs: { total: number; startup: number; traffic: number; settle: number };
  /** Closed sagas per second, first POST to last close. */
  sagasPerSecond: number;
  /** Saga time: the first POST to the order row leaving `pending`. */
  sagaMs: { p50: number; p95: number; max: number; slowest?: { orderId: string; kind: string; ms: number } };
  faults: Record<string, number>;
  faultsSkipped: Record<string, number>;
  faultEvents: FaultEvent[];
  /** Processes that died without being killed by the driver, and how. */
  crashes: CrashRecord[];
  processNotes: string[];
  clientRetries: number;
  duplicatePosts: number;
  http: Record<string, number>;
  cancels: Record<string, number>;
  /** Orders still pending after the wait. */
  stuck: StuckOrder[];
  /** Sagas Temporal still runs after the wait. */
  runningSagas: string[];
  /** The books audit (src/orders/audit) and what the client saw break. */
  violations: string[];
  /** Each closed saga's result against its ledger rows and its order (dev/chaos/saga-audit). */
  sagaViolations: string[];
  /** How many closed sagas that check read. */
  sagasChecked: number;
  clientViolations: string[];
  clientNotes: string[];
  audit?: AuditReport;
  auditError?: string;
  /** The stream doors' counts (absent with streams: false). */
  doors?: DoorsReport;
  /** The stream doors' audit (dev/chaos/stream-audit): messages → orders, orders → events → consumers, events → webhooks. */
  doorViolations: string[];
  deadlineHit: boolean;
  aborted: boolean;
  logDir?: string;
  runDir: string;
}

export interface DoorsReport {
  /** What the traffic published to the order stream, and what the intake made of it. */
  messages: StreamTrafficStats & {
    /** Messages in the order stream (first publishes, producer retries and repeats the broker stored). */
    inStream: number;
    deadLetters: number;
    /** The intake's outcomes by its log: new, duplicate (its inbox dropped a repeat or a redelivery), retry, dead-letter. */
    intake: Record<string, number>;
  };
  orders: { viaStream: number; viaHttp: number };
  events: {
    total: number;
    byType: Record<string, number>;
    published: number;
    /** Messages in the events stream: the relay's publishes the broker stored (a republish after its window counts twice). */
    inStream: number;
    /** Distinct events the counting consumer applied, and its rows (one per event when all is well). */
    counted: number;
    countedRows: number;
    /** The counting consumer's outcomes: new, duplicate (its inbox dropped a redelivery or a republish), retry, dead-letter. */
    counter: Record<string, number>;
    /** Completed events, and the example projection's notifications. */
    completed: number;
    notifications: number;
  };
  webhooks: {
    endpointId: string;
    deliveries: number;
    byState: Record<string, number>;
    attempts: number;
    attemptsFailed: Record<string, number>;
    receiver: ReceiverStats;
  };
}

const MINUTE = 60_000;

/**
 * The project's own fault soak: brings up a whole stack it can kill piece by
 * piece, drives orders through the real HTTP API and the order stream while it
 * kills workers, resets and restarts PostgreSQL, restarts the services and the
 * API, arms provider faults, kills the Temporal server, kills the intake and the
 * relay, restarts NATS and flaps the webhook receiver; then stops, waits for
 * every saga to close and every event to be published, consumed and delivered,
 * and audits the books, the sagas and the stream doors from the rows.
 */
export async function runChaos(options: ChaosOptions = {}): Promise<ChaosReport> {
  const t0 = Date.now();
  const clock = () => Date.now() - t0;
  const log = options.log ?? (() => undefined);
  const orders = options.orders ?? 200;
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const faultsEnabled = options.faults !== false;
  const deadlineMs = options.deadlineMs ?? 15 * MINUTE;
  const deadlineAt = t0 + deadlineMs;
  const providerTimeoutMs = options.providerTimeoutMs ?? 2_500;
  const ratePerSecond = options.ratePerSecond ?? 2;
  const faultScale =
    options.faultScale === undefined || options.faultScale === 'auto'
      ? Math.min(1, Math.max(0.25, orders / ratePerSecond / 120))
      : options.faultScale;
  const plan: FaultPlan = faultsEnabled
    ? { ...scalePlan(DEFAULT_FAULT_PLAN, faultScale), ...options.faultPlan }
    : NO_FAULTS;
  const rng = new Rng(seed);
  const orderRng = rng.fork('orders');
  const clientRng = rng.fork('client');
  const faultRng = rng.fork('faults');

  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-chaos-'));
  // As root the embedded PostgreSQL runs as `postgres`, which must reach its data directory.
  fs.chmodSync(runDir, 0o755);
  log(`seed ${seed}; run directory ${runDir} (logs in ${path.join(runDir, 'logs')})`);

  // The run's own abort: Ctrl-C, or the traffic's share of the deadline running out.
  const trafficAbort = new AbortController();
  // Every request and pause of twenty concurrent clients listens to it.
  setMaxListeners(0, trafficAbort.signal);
  const onUserAbort = () => trafficAbort.abort();
  options.signal?.addEventListener('abort', onUserAbort, { once: true });
  // Settling, the audit and the clean-up get the last part of the deadline.
  const reserveMs = Math.min(3 * MINUTE, Math.max(45_000, deadlineMs * 0.25));
  let deadlineHit = false;
  const trafficTimer = setTimeout(() => {
    deadlineHit = true;
    trafficAbort.abort();
  }, Math.max(0, deadlineAt - reserveMs - Date.now()));

  let stack: ChaosStack | undefined;
  let injector: FaultInjector | undefined;
  const report: ChaosReport = {
    ok: false,
    seed,
    faultsEnabled,
    temporal: options.temporal ?? 'dev',
    postgres: options.postgres ?? 'embedded',
    streams: options.streams !== false,
    faultPlan: plan,
    orders: { planned: orders, created: 0, postGaveUp: 0, abandoned: 0, inDatabase: 0, unanswered: 0 },
    byStatus: {},
    durationMs: { total: 0, startup: 0, traffic: 0, settle: 0 },
    sagasPerSecond: 0,
    sagaMs: { p50: 0, p95: 0, max: 0 },
    faults: {},
    faultsSkipped: {},
    faultEvents: [],
    crashes: [],
    processNotes: [],
    clientRetries: 0,
    duplicatePosts: 0,
    http: {},
    cancels: {},
    stuck: [],
    runningSagas: [],
    violations: [],
    sagaViolations: [],
    sagasChecked: 0,
    clientViolations: [],
    clientNotes: [],
    doorViolations: [],
    deadlineHit: false,
    aborted: false,
    runDir,
  };
  try {
    stack = await ChaosStack.start({
      dir: runDir,
      workers: options.workers ?? 2,
      providerTimeoutMs,
      shutdownGraceMs: 5_000,
      workflowBundle: options.workflowBundle,
      log,
      clock,
      signal: trafficAbort.signal,
      temporal: options.temporal,
      postgres: options.postgres,
      streams: options.streams,
    });
    report.durationMs.startup = clock();
    const runTag = seed.toString(36);
    const { plans, initialStock } = planOrders(orders, orderRng, runTag);
    await stack.db.query(
      `INSERT INTO inventory (sku, on_hand) SELECT * FROM unnest($1::text[], $2::int[])`,
      [Object.keys(initialStock), Object.values(initialStock)],
    );
    const client = await createApiClient(stack.db, 'chaos');
    let webhook: { endpointId: string; path: string } | undefined;
    if (stack.receiver) {
      webhook = await registerWebhook(stack, client.apiKey);
      const expectedMs = (orders / ratePerSecond) * 1000;
      // The repeats: long after the broker's duplicate window (5 s here; three windows at the least),
      // minutes apart in a long run (up to half the traffic's expected length, at most 4 minutes), so
      // the broker stores them again and only the intake's inbox is left to drop them. Those of the
      // last orders are drawn in, so the traffic ends at most three windows after its last order.
      const minDelay = 3 * ORDER_STREAM_DUPLICATE_WINDOW_MS;
      const maxDelay = Math.max(minDelay, Math.min(4 * MINUTE, expectedMs / 2));
      assignDoors(plans, rng.fork('doors'), runTag, {
        share: options.streamShare ?? 2 / 3,
        duplicateShare: 0.2,
        duplicateDelayMs: (plan, r) => Math.max(minDelay, Math.min(r.int(minDelay, maxDelay), expectedMs - (plan.index * 1000) / ratePerSecond)),
      });
    }
    const viaStream = plans.filter((p) => p.stream).length;
    log(
      `stack up in ${(report.durationMs.startup / 1000).toFixed(1)} s; sending ${orders} orders (${viaStream ? `${orders - viaStream} through the API, ${viaStream} through the stream; ` : ''}${options.concurrency ?? 20} in flight, ${ratePerSecond}/s)${faultsEnabled ? ` under faults (intervals x${faultScale.toFixed(2)})` : ', no faults'}`,
    );

    injector = new FaultInjector(stack, plan, faultRng, providerTimeoutMs, clock, log);
    const faults = injector;
    let submittedAll: () => void = () => undefined;
    const allSubmitted = new Promise<void>((resolve) => (submittedAll = resolve));
    if (faultsEnabled) faults.start();
    const trafficStart = Date.now();
    let lastReported = 0;
    const trafficRun = driveTraffic({
      apiUrl: stack.apiUrl,
      apiKey: client.apiKey,
      plans,
      concurrency: options.concurrency ?? 20,
      ratePerSecond,
      db: stack.db,
      orderSettleMs: 60_000,
      giveUpMs: 90_000,
      requestTimeoutMs: 20_000,
      signal: trafficAbort.signal,
      rng: clientRng,
      js: stack.nc ? jetstream(stack.nc) : undefined,
      onSubmitted: (fraction) => {
        faults.progress(fraction);
        if (fraction - lastReported >= 0.25 || fraction === 1) {
          lastReported = fraction;
          log(`${Math.round(fraction * 100)}% of the orders submitted (${(clock() / 1000).toFixed(0)} s)`);
        }
        if (fraction >= 1) submittedAll();
      },
    });
    // Faults stop once every order is submitted (or the traffic ends early); then the system heals.
    await Promise.race([allSubmitted, trafficRun.then(() => undefined, () => undefined)]);
    const submittedAt = Date.now();
    report.durationMs.traffic = submittedAt - trafficStart;
    const userAborted = () => options.signal?.aborted === true;
    // Bounded: a fault whose restart never succeeds must not hold the run.
    await withDeadline(faults.stop(), 90_000, 'stopping the faults').catch((e: Error) => report.processNotes.push(e.message));
    if (!userAborted()) {
      if (faultsEnabled) log('faults off');
      await withDeadline(healStack(stack, log), 90_000, 'bringing every part back up').catch((e: Error) =>
        report.processNotes.push(e.message),
      );
    }
    const { outcomes, stats } = await trafficRun;
    report.clientRetries = stats.retries;
    report.duplicatePosts = stats.duplicatePosts;
    report.http = stats.http;
    report.clientViolations = stats.violations;
    report.clientNotes = stats.notes;
    report.orders.created = outcomes.filter((o) => o.orderId).length;
    report.orders.postGaveUp = outcomes.filter((o) => !o.stream && !o.orderId && !o.abandoned).length;
    report.orders.abandoned = stats.abandoned;
    for (const o of outcomes) if (o.cancel) report.cancels[o.cancel] = (report.cancels[o.cancel] ?? 0) + 1;

    // Settle: every order row leaves `pending` (including orders whose POST never got its 201).
    const settleStart = Date.now();
    if (!userAborted()) {
      log('all orders submitted; waiting for every saga to close');
      const settleUntil = Math.min(settleStart + (options.settleTimeoutMs ?? 3 * MINUTE), deadlineAt - 30_000);
      if (stack.nc) await waitForIntake(stack, outcomes, settleUntil, options.signal);
      await waitUntilSettled(stack, settleUntil, options.signal);
      await waitForRunningSagas(stack, Math.min(Date.now() + 15_000, deadlineAt - 30_000), options.signal);
      if (stack.nc) await waitForDoors(stack, settleUntil, options.signal);
    }
    report.durationMs.settle = Date.now() - settleStart;

    await withDeadline(summarize(stack, report, outcomes), 30_000, 'reading the outcome').catch((e: Error) =>
      report.processNotes.push(e.message),
    );
    await withDeadline(auditSagas(stack), userAborted() ? 15_000 : 5 * MINUTE, 'checking every saga against its ledger').then(
      (v) => {
        report.sagaViolations = v.problems;
        report.sagasChecked = v.checked;
      },
      (e: Error) => report.processNotes.push(e.message),
    );
    try {
      const audit = auditBooks(stack.db, { settled: true, initialStock, checks: [reconcileSimulatedServices] });
      report.audit = await withDeadline(audit, userAborted() ? 15_000 : 60_000, 'the books audit');
      report.violations = report.audit.violations;
      report.byStatus = report.audit.byStatus;
    } catch (err) {
      report.auditError = (err as Error).message;
    }
    if (stack.nc && webhook) {
      await withDeadline(auditDoors(stack, report, outcomes, stats, client.id, webhook), 120_000, 'the stream doors audit').catch((e: Error) =>
        report.doorViolations.push(`the stream doors audit failed: ${e.message}`),
      );
    }
  } finally {
    clearTimeout(trafficTimer);
    options.signal?.removeEventListener('abort', onUserAbort);
    if (injector) {
      await withDeadline(injector.stop(), 30_000, 'stopping the faults').catch(() => undefined);
      report.faults = { ...injector.counts };
      report.faultsSkipped = { ...injector.skipped };
      report.faultEvents = injector.events;
    }
    if (stack) {
      report.crashes = stack.crashes;
      report.processNotes = stack.notes;
      log('stopping the stack');
      await stack.stop().catch((e: Error) => log(`stopping the stack: ${e.message}`));
    }
    report.deadlineHit = deadlineHit;
    report.aborted = options.signal?.aborted === true;
    cleanUp(runDir, options, report);
    report.durationMs.total = Date.now() - t0;
  }
  report.ok =
    !report.auditError &&
    report.violations.length === 0 &&
    report.sagaViolations.length === 0 &&
    report.clientViolations.length === 0 &&
    report.stuck.length === 0 &&
    report.runningSagas.length === 0 &&
    report.doorViolations.length === 0 &&
    !report.aborted &&
    !report.deadlineHit;
  return report;
}

/**
 * Every closed saga's result against its ledger rows and its order row: the steps and compensations
 * it lists, the first business failure as its reason, its outcome as the order's status. A saga that
 * failed (a compensation that failed for good) is a violation of its own.
 */
async function auditSagas(stack: ChaosStack): Promise<{ checked: number; problems: string[] }> {
  const orders = (await stack.db.query<OrderForAudit>(`SELECT id, status, failure_reason FROM orders WHERE status <> 'pending' ORDER BY id`)).rows;
  const rows = await stack.db.query<LedgerRowForAudit & { workflow_id: string }>(
    `SELECT workflow_id, key, step, state, undone, error FROM step_ledger ORDER BY created_at, key`,
  );
  const ledger = new Map<string, LedgerRowForAudit[]>();
  for (const r of rows.rows) ledger.set(r.workflow_id, [...(ledger.get(r.workflow_id) ?? []), r]);
  const problems: string[] = [];
  let next = 0;
  const check = async () => {
    while (next < orders.length) {
      const order = orders[next++]!;
      const wf = orderWorkflowId(order.id);
      try {
        const result = (await stack.temporalClient.workflow.getHandle(wf).result()) as SagaAccount;
        problems.push(...checkSagaAgainstLedger(order, result, ledger.get(wf) ?? []));
      } catch (err) {
        const cause = (err as { cause?: { message?: string } }).cause?.message;
        problems.push(`${order.id}: the saga did not complete: ${cause ?? (err as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, check));
  return { checked: orders.length, problems: problems.sort() };
}

/** After the faults: every server up again, so the sagas can finish. */
async function healStack(stack: ChaosStack, log: (m: string) => void): Promise<void> {
  const parts = [stack.postgres, stack.temporal, stack.nats, stack.services, stack.api, stack.pool, stack.intake, stack.relay, stack.consumers].filter(
    (p) => p !== undefined,
  );
  const down = parts.filter((p) => !p.running);
  await stack.healCluster();
  await stack.healPostgresHa();
  if (down.length) log(`after the faults, starting again: ${down.map((p) => p.spec.name).join(', ')}`);
  await Promise.all(down.map((p) => stack.ensureUp(p, 0)));
}

/** Registers the receiver as the client's webhook endpoint through the API (POST /webhooks), before the traffic. */
async function registerWebhook(stack: ChaosStack, apiKey: string): Promise<{ endpointId: string; path: string }> {
  const receiver = stack.receiver!;
  const path = '/hooks/chaos';
  const res = await fetch(`${stack.apiUrl}/webhooks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: receiver.url(path) }),
    signal: AbortSignal.timeout(20_000),
  });
  const body = (await res.json()) as { id?: string; secret?: string };
  if (res.status !== 201 || !body.id || !body.secret) throw new Error(`POST /webhooks answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}`);
  receiver.setSecret(path, body.secret);
  stack.opts.log(`webhook endpoint ${body.id} registered for the chaos client: ${receiver.url(path)}`);
  return { endpointId: body.id, path };
}

/**
 * Every message the broker acked has its order (or the intake's consumer holds nothing
 * more: what is missing then is for the audit to name).
 */
async function waitForIntake(stack: ChaosStack, outcomes: OrderOutcome[], until: number, signal?: AbortSignal): Promise<void> {
  const customers = outcomes.flatMap((o) => (o.stream?.acked ? [o.stream.customerId] : []));
  if (!customers.length) return;
  const topology = orderIntakeTopology();
  let idle = 0;
  let last = -1;
  while (Date.now() < until && !signal?.aborted) {
    try {
      const res = await stack.db.query<{ n: number }>(`SELECT count(DISTINCT customer_id)::int AS n FROM orders WHERE customer_id = ANY($1)`, [customers]);
      const missing = customers.length - (res.rows[0]?.n ?? 0);
      if (missing === 0) return;
      const info = await (await jetstreamManager(stack.nc!)).consumers.info(topology.stream, topology.consumer);
      idle = info.num_pending + info.num_ack_pending === 0 ? idle + 1 : 0;
      if (idle >= 3) return;
      if (missing !== last) stack.opts.log(`${missing} stream messages still without their order`);
      last = missing;
    } catch {
      // PostgreSQL or NATS may still be coming back.
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Every event published, applied by both consumers, and every webhook delivery out of `pending`. */
async function waitForDoors(stack: ChaosStack, until: number, signal?: AbortSignal): Promise<void> {
  let last = '';
  while (Date.now() < until && !signal?.aborted) {
    try {
      const { rows } = await stack.db.query<{ events: number; unpublished: number; counted: number; completed: number; notified: number; pending: number }>(
        `SELECT (SELECT count(*) FROM order_events)::int AS events,
                (SELECT count(*) FROM order_events WHERE published_at IS NULL)::int AS unpublished,
                (SELECT count(DISTINCT event_id) FROM chaos_events_seen)::int AS counted,
                (SELECT count(*) FROM order_events WHERE type = 'completed')::int AS completed,
                (SELECT count(DISTINCT event_id) FROM shipping_notifications)::int AS notified,
                (SELECT count(*) FROM webhook_deliveries WHERE state = 'pending')::int AS pending`,
      );
      const r = rows[0]!;
      if (r.unpublished === 0 && r.counted >= r.events && r.notified >= r.completed && r.pending === 0) return;
      const now = `${r.unpublished} events unpublished, ${Math.max(0, r.events - r.counted)} not yet counted, ${Math.max(0, r.completed - r.notified)} completed not yet notified, ${r.pending} webhook deliveries pending`;
      if (now !== last) stack.opts.log(now);
      last = now;
    } catch {
      // The database may still be coming back (or the consumers have not made their table yet).
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function waitUntilSettled(stack: ChaosStack, until: number, signal?: AbortSignal): Promise<void> {
  let last = -1;
  while (Date.now() < until && !signal?.aborted) {
    try {
      const res = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM orders WHERE status = 'pending'`);
      const n = res.rows[0]?.n ?? 0;
      if (n === 0) return;
      if (n !== last) stack.opts.log(`${n} orders still pending`);
      last = n;
    } catch {
      // The database may still be coming back.
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function runningSagaIds(stack: ChaosStack): Promise<string[]> {
  const ids: string[] = [];
  for await (const wf of stack.temporalClient.workflow.list({ query: `ExecutionStatus = 'Running'` })) {
    ids.push(wf.workflowId);
    if (ids.length >= 1000) break;
  }
  return ids;
}

async function waitForRunningSagas(stack: ChaosStack, until: number, signal?: AbortSignal): Promise<void> {
  while (Date.now() < until && !signal?.aborted) {
    const ids = await runningSagaIds(stack).catch(() => undefined);
    if (ids && ids.length === 0) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** Dead letters of a topology (none if its dead-letter stream was never made). */
async function deadLettersOf(stack: ChaosStack, t: InboxTopology) {
  try {
    return await listDeadLetters(stack.nc!, t, 1000);
  } catch (err) {
    if (/not found/i.test((err as Error).message)) return [];
    throw err;
  }
}

async function streamMessages(stack: ChaosStack, stream: string): Promise<number> {
  return (await (await jetstreamManager(stack.nc!)).streams.info(stream)).state.messages;
}

/**
 * The stream doors' audit and counts (dev/chaos/stream-audit.ts), from the rows, the
 * streams and what the receiver saw.
 */
async function auditDoors(
  stack: ChaosStack,
  report: ChaosReport,
  outcomes: OrderOutcome[],
  stats: TrafficStats,
  clientId: string,
  webhook: { endpointId: string; path: string },
): Promise<void> {
  const db = stack.db;
  const intakeTopology = orderIntakeTopology();
  const orders = (await db.query<{ id: string; status: string; client_id: string | null; customer_id: string }>(`SELECT id, status, client_id, customer_id FROM orders`)).rows;
  const events = (
    await db.query<EventForAudit>(
      `SELECT position::text, event_id::text, order_id, client_id, type, published_at IS NOT NULL AS published FROM order_events ORDER BY position`,
    )
  ).rows;
  await db.query(EVENTS_SEEN_DDL);
  const counted = (await db.query<SeenRow>(`SELECT event_id, type, order_id FROM chaos_events_seen`)).rows;
  const notifications = (await db.query<SeenRow>(`SELECT event_id, 'completed' AS type, order_id FROM shipping_notifications`).catch(() => ({ rows: [] as SeenRow[] }))).rows;
  const inbox = (await db.query<{ message_id: string; resource_id: string }>(`SELECT message_id, resource_id FROM inbox_messages WHERE source = $1`, [intakeTopology.stream])).rows;
  const deliveries = (
    await db.query<DeliveryRow>(`SELECT id, endpoint_id, event_id::text, type, order_id, state, attempts, last_error FROM webhook_deliveries ORDER BY event_position`)
  ).rows;
  const endpoint = (await db.query<{ disabled_reason: string | null; disabled: boolean }>(`SELECT disabled_reason, disabled_at IS NOT NULL AS disabled FROM webhook_endpoints WHERE id = $1`, [webhook.endpointId])).rows[0];
  const attempts = (
    await db.query<{ outcome: string; n: number }>(
      `SELECT CASE WHEN status BETWEEN 200 AND 299 THEN 'ok'
                   WHEN status IS NOT NULL THEN 'HTTP ' || status
                   WHEN error LIKE 'no answer within%' THEN 'timed out'
                   WHEN error LIKE '%ECONNREFUSED%' THEN 'refused'
                   ELSE 'connection lost' END AS outcome, count(*)::int AS n
         FROM webhook_attempts GROUP BY 1`,
    )
  ).rows;
  const intakeDead = await deadLettersOf(stack, intakeTopology);
  const counterDead = await deadLettersOf(stack, eventCounterTopology());
  const notificationsDead = await deadLettersOf(stack, { ...eventCounterTopology(), deadLetterStream: NOTIFICATIONS_DEAD_LETTER_STREAM });

  const messages = outcomes.flatMap((o) =>
    o.stream ? [{ messageId: o.stream.messageId, customerId: o.stream.customerId, acked: o.stream.acked, repeated: o.stream.repeat?.acked === true }] : [],
  );
  const streamOrders = orders.filter((o) => o.client_id === null || o.customer_id.startsWith('stream-'));
  const clientEvents = events.filter((e) => e.client_id === clientId);
  const applied = [...(stack.receiver?.applied.entries() ?? [])].map(([webhookId, a]) => ({ webhookId, ...a }));
  const receiverStats = stack.receiver!.stats();
  const v: string[] = [];
  v.push(...checkStreamMessages(messages, streamOrders, inbox, intakeDead));
  v.push(...checkOrderEvents(orders, events));
  v.push(...checkSeenOnce('the counting consumer', events, counted));
  v.push(
    ...checkSeenOnce(
      'the shipping-notification projection',
      events.filter((e) => e.type === 'completed'),
      notifications,
      events,
    ),
  );
  for (const d of counterDead) v.push(`dead letter ${d.sequence} of the counting consumer: ${d.reason}: ${d.detail}`);
  for (const d of notificationsDead) v.push(`dead letter ${d.sequence} of the shipping-notification projection: ${d.reason}: ${d.detail}`);
  v.push(
    ...checkWebhooks({
      endpointId: webhook.endpointId,
      path: webhook.path,
      disabledReason: endpoint?.disabled ? (endpoint.disabled_reason ?? 'disabled') : null,
      events: clientEvents,
      deliveries,
      applied,
      badSignatures: receiverStats.badSignatures,
    }),
  );
  report.doorViolations = v;

  const byType: Record<string, number> = {};
  for (const e of events) byType[e.type] = (byType[e.type] ?? 0) + 1;
  const byState: Record<string, number> = {};
  for (const d of deliveries) byState[d.state] = (byState[d.state] ?? 0) + 1;
  const attemptsFailed: Record<string, number> = {};
  for (const a of attempts) if (a.outcome !== 'ok') attemptsFailed[a.outcome] = a.n;
  report.doors = {
    messages: {
      ...stats.stream,
      inStream: await streamMessages(stack, intakeTopology.stream),
      deadLetters: intakeDead.length,
      intake: { ...stack.doorCounters.intake },
    },
    orders: { viaStream: streamOrders.length, viaHttp: orders.length - streamOrders.length },
    events: {
      total: events.length,
      byType,
      published: events.filter((e) => e.published).length,
      inStream: await streamMessages(stack, ORDER_EVENTS.stream),
      counted: new Set(counted.map((r) => r.event_id)).size,
      countedRows: counted.length,
      counter: { ...stack.doorCounters.counter },
      completed: byType.completed ?? 0,
      notifications: notifications.length,
    },
    webhooks: {
      endpointId: webhook.endpointId,
      deliveries: deliveries.length,
      byState,
      attempts: attempts.reduce((n, a) => n + a.n, 0),
      attemptsFailed,
      receiver: receiverStats,
    },
  };
}

/** Saga times, throughput, stuck orders and running sagas, from the rows and from Temporal. */
async function summarize(stack: ChaosStack, report: ChaosReport, outcomes: OrderOutcome[]): Promise<void> {
  const rows = await stack.db.query<{ id: string; status: string; updated_at: Date; client_id: string | null; customer_id: string }>(
    `SELECT id, status, updated_at, client_id, customer_id FROM orders`,
  );
  report.orders.inDatabase = rows.rowCount ?? 0;
  const known = new Set(outcomes.flatMap((o) => (o.orderId ? [o.orderId] : [])));
  // A stream order has no 201: its message names it, by its customer.
  report.orders.unanswered = rows.rows.filter((r) => r.client_id !== null && !known.has(r.id)).length;
  const byCustomer = new Map(rows.rows.filter((r) => r.client_id === null).map((r) => [r.customer_id, r.id]));
  for (const o of outcomes) if (o.stream && !o.orderId) o.orderId = byCustomer.get(o.stream.customerId);
  for (const r of rows.rows) report.byStatus[r.status] = (report.byStatus[r.status] ?? 0) + 1;
  const byId = new Map(outcomes.filter((o) => o.orderId).map((o) => [o.orderId!, o]));
  const times: { orderId: string; kind: string; ms: number; closedAt: number; firstPostAt: number }[] = [];
  for (const r of rows.rows) {
    const o = byId.get(r.id);
    if (!o || r.status === 'pending') continue;
    const closedAt = new Date(r.updated_at).getTime();
    times.push({ orderId: r.id, kind: o.kind, ms: Math.max(0, closedAt - o.firstPostAt), closedAt, firstPostAt: o.firstPostAt });
  }
  times.sort((a, b) => a.ms - b.ms);
  const pct = (p: number) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))]?.ms ?? 0;
  const slowest = times[times.length - 1];
  report.sagaMs = { p50: pct(50), p95: pct(95), max: slowest?.ms ?? 0, slowest: slowest && { orderId: slowest.orderId, kind: slowest.kind, ms: slowest.ms } };
  if (times.length) {
    const span = Math.max(...times.map((t) => t.closedAt)) - Math.min(...times.map((t) => t.firstPostAt));
    report.sagasPerSecond = span > 0 ? times.length / (span / 1000) : 0;
  }

  // The API's word on a cancel must be what happened: 202 ends cancelled, 409 does not.
  for (const r of rows.rows) {
    const o = byId.get(r.id);
    if (!o?.cancel || r.status === 'pending') continue;
    if (o.cancel === '202' && r.status !== 'cancelled') {
      report.clientViolations.push(`${r.id}: cancel accepted (202, ${o.cancelMoment}) but the order ended ${r.status}`);
    } else if (o.cancel === '409' && r.status === 'cancelled') {
      report.clientViolations.push(`${r.id}: cancel refused (409, ${o.cancelMoment}) but the order ended cancelled`);
    }
  }

  for (const r of rows.rows.filter((x) => x.status === 'pending').slice(0, 100)) {
    const o = byId.get(r.id);
    const stuck: StuckOrder = { orderId: r.id, status: r.status, saga: 'unknown', kind: o?.kind, idempotencyKey: o?.idempotencyKey, post: o?.post, cancel: o?.cancel };
    try {
      const d = await stack.temporalClient.workflow.getHandle(orderWorkflowId(r.id)).describe();
      stuck.saga = d.status.name;
      stuck.currentStep = d.typedSearchAttributes.get(CurrentStepKey);
    } catch (err) {
      stuck.saga = (err as Error).name === 'WorkflowNotFoundError' ? 'no workflow' : `describe failed: ${(err as Error).message}`;
    }
    report.stuck.push(stuck);
  }
  report.runningSagas = await runningSagaIds(stack).catch((e: Error) => [`(could not list: ${e.message})`]);
}

function cleanUp(runDir: string, options: ChaosOptions, report: ChaosReport): void {
  if (options.keepState) {
    report.logDir = path.join(runDir, 'logs');
    return;
  }
  for (const entry of fs.readdirSync(runDir)) {
    if (entry === 'logs' && options.keepLogs !== false) continue;
    fs.rmSync(path.join(runDir, entry), { recursive: true, force: true });
  }
  if (options.keepLogs !== false) report.logDir = path.join(runDir, 'logs');
  else fs.rmSync(runDir, { recursive: true, force: true });
}

async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no answer within ${Math.round(ms / 1000)} s`)), Math.max(0, ms));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The report as a few lines of text. */
export function formatReport(r: ChaosReport): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const kv = (o: Record<string, number>) =>
    Object.entries(o)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ') || 'none';
  const lines = [
    `chaos soak, seed ${r.seed}${r.temporal === 'cluster' ? ', Temporal cluster' : ''}${r.postgres === 'ha' ? ', PostgreSQL HA' : ''}${r.faultsEnabled ? '' : ' (baseline, no faults)'}: ${r.ok ? 'OK' : 'FAILED'}`,
    `  orders: ${r.orders.planned} planned${r.doors ? ` (${r.doors.messages.planned} published to the stream, ${r.orders.planned - r.doors.messages.planned} POSTed)` : ''}, ${r.orders.created} created (201), ${r.orders.abandoned} abandoned by their client after one failed POST, ${r.orders.postGaveUp} given up after retries; ${r.orders.inDatabase} rows (${r.orders.unanswered} without a 201); ${kv(r.byStatus)}`,
    `  time: ${s(r.durationMs.total)} total (start-up ${s(r.durationMs.startup)}, traffic ${s(r.durationMs.traffic)}, settle ${s(r.durationMs.settle)})`,
    `  sagas: ${r.sagasPerSecond.toFixed(2)}/s; p50 ${s(r.sagaMs.p50)}, p95 ${s(r.sagaMs.p95)}, slowest ${s(r.sagaMs.max)}${r.sagaMs.slowest ? ` (${r.sagaMs.slowest.orderId}, ${r.sagaMs.slowest.kind})` : ''}`,
    ...(r.faultsEnabled ? [`  fault plan: ${planLine(r.faultPlan, r.temporal, r.streams, r.postgres)}`] : []),
    `  faults: ${kv(r.faults)}`,
    ...(Object.keys(r.faultsSkipped).length ? [`  faults skipped (nothing to hit, or the target was down): ${kv(r.faultsSkipped)}`] : []),
    `  client: ${r.clientRetries} retries, ${r.duplicatePosts} duplicate POSTs; cancels ${kv(r.cancels)}`,
    `  http: ${kv(r.http)}`,
    `  crashes (died without being killed): ${r.crashes.length}`,
    ...r.crashes.map(
      (c) =>
        `    - ${c.process} pid ${c.pid} at ${s(c.atMs)}: code ${c.code}, signal ${c.signal}, ${c.wasReady ? `after ${s(c.uptimeMs)} up` : 'while starting'}` +
        (c.headline ? `: ${c.headline}` : c.lastOutput ? `\n        ${lastLines(c.lastOutput, 4).join('\n        ')}` : ''),
    ),
    ...r.processNotes.map((n) => `    note: ${n}`),
    `  stuck orders (still pending): ${r.stuck.length}`,
    ...r.stuck.slice(0, 20).map((x) => `    - ${x.orderId} (${x.kind ?? 'POST unanswered'}${x.cancel ? `, cancel ${x.cancel}` : ''}): saga ${x.saga}${x.currentStep ? ` at ${x.currentStep}` : ''}`),
    `  sagas still running: ${r.runningSagas.length}${r.runningSagas.length ? ` (${r.runningSagas.slice(0, 5).join(', ')}${r.runningSagas.length > 5 ? ', ...' : ''})` : ''}`,
    `  audit violations: ${r.auditError ? `audit failed: ${r.auditError}` : r.violations.length}`,
    ...r.violations.slice(0, 30).map((v) => `    - ${v}`),
    ...(r.violations.length > 30 ? [`    ... and ${r.violations.length - 30} more`] : []),
    `  sagas against their ledger: ${r.sagasChecked} checked, ${r.sagaViolations.length} violations`,
    ...r.sagaViolations.slice(0, 30).map((v) => `    - ${v}`),
    ...(r.sagaViolations.length > 30 ? [`    ... and ${r.sagaViolations.length - 30} more`] : []),
    ...(r.doors ? doorsTable(r.doors) : []),
    ...(r.doors || r.doorViolations.length ? [`  stream doors audit (messages → orders → events → consumers, webhooks): ${r.doorViolations.length} violations`] : []),
    ...r.doorViolations.slice(0, 30).map((v) => `    - ${v}`),
    ...(r.doorViolations.length > 30 ? [`    ... and ${r.doorViolations.length - 30} more`] : []),
    ...(r.clientViolations.length ? [`  client-side violations: ${r.clientViolations.length}`, ...r.clientViolations.map((v) => `    - ${v}`)] : []),
    ...(r.clientNotes.length ? [`  client notes: ${r.clientNotes.length}`, ...r.clientNotes.slice(0, 10).map((v) => `    - ${v}`)] : []),
    ...(r.deadlineHit ? ['  the deadline cut the traffic short'] : []),
    ...(r.aborted ? ['  aborted (Ctrl-C)'] : []),
    ...(r.logDir ? [`  logs: ${r.logDir}`] : []),
  ];
  return lines.join('\n');
}

/** The stream doors' counts as a two-column table. */
function doorsTable(d: DoorsReport): string[] {
  const kv = (o: Record<string, number>) =>
    Object.entries(o)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'none';
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const m = d.messages;
  const e = d.events;
  const w = d.webhooks;
  const rows: [string, string, string][] = [
    ['stream messages published (acked)', `${m.published}`, `of ${m.planned}; ID in Nats-Msg-Id ${m.idInHeader}, in the body ${m.idInBody}; ${m.publishRetries} publishes retried, ${m.gaveUp} never acked`],
    [
      'duplicates published (same message ID)',
      `${m.duplicatesPublished}`,
      `${m.duplicatesPublished ? `${s(m.duplicateDelayMs.min)} to ${s(m.duplicateDelayMs.max)} after the first; ` : ''}dropped by the broker's window ${m.duplicatesDroppedByBroker}, the rest left to the inbox`,
    ],
    ['order stream messages / dead letters', `${m.inStream} / ${m.deadLetters}`, `the intake's outcomes: ${kv(m.intake)}`],
    ['orders via the stream / via HTTP', `${d.orders.viaStream} / ${d.orders.viaHttp}`, ''],
    ['order events (outbox)', `${e.total}`, kv(e.byType)],
    ['events published', `${e.published}`, `${e.inStream} messages in the events stream`],
    ['events consumed (distinct / rows)', `${e.counted} / ${e.countedRows}`, `the counting consumer's deliveries: ${kv(e.counter)}`],
    ['completed events / notifications', `${e.completed} / ${e.notifications}`, 'the example projection'],
    ['webhook deliveries', `${w.deliveries}`, kv(w.byState)],
    ['webhook attempts', `${w.attempts}`, `failed: ${kv(w.attemptsFailed)}`],
    ['receiver hits', `${w.receiver.hits}`, kv(w.receiver.byOutcome)],
    ['webhook-ids applied', `${w.receiver.applied}`, ''],
    ['duplicates dropped by receiver dedupe', `${w.receiver.duplicatesDropped}`, ''],
  ];
  const width = Math.max(...rows.map(([l]) => l.length));
  const valueWidth = Math.max(...rows.map(([, v]) => v.length));
  return ['  stream doors:', ...rows.map(([l, v, note]) => `    ${l.padEnd(width)}  ${v.padStart(valueWidth)}${note ? `  ${note}` : ''}`)];
}

function planLine(p: FaultPlan, temporal: 'dev' | 'cluster', streams: boolean, postgres: 'embedded' | 'ha' = 'embedded'): string {
  const every = (name: string, ms: number) => (ms > 0 ? [`${name} every ${(ms / 1000).toFixed(1)} s`] : []);
  return [
    ...every('worker SIGKILL', p.workerKillEveryMs),
    ...every('worker SIGTERM', p.workerTermEveryMs),
    ...every('pg_terminate_backend', p.pgTerminateEveryMs),
    ...every('services restart', p.servicesRestartEveryMs),
    ...every('API restart', p.apiRestartEveryMs),
    ...every('provider fault', p.providerFaultEveryMs),
    ...p.pgRestartsAt.map((at, i) =>
      postgres === 'ha'
        ? `PostgreSQL ${i % 2 === 0 ? 'primary SIGKILL (failover)' : 'standby SIGKILL'} at ${Math.round(at * 100)}%`
        : `PostgreSQL restart at ${Math.round(at * 100)}%`,
    ),
    ...(temporal === 'cluster'
      ? every('cluster host SIGKILL (history, matching, frontend in turn)', p.clusterHostKillEveryMs)
      : p.temporalKillsAt.map((at) => `Temporal SIGKILL at ${Math.round(at * 100)}%`)),
    ...(streams
      ? [
          ...every('intake SIGKILL', p.intakeKillEveryMs),
          ...every('relay SIGKILL', p.relayKillEveryMs),
          ...p.natsRestartsAt.map((at) => `NATS SIGKILL and restart at ${Math.round(at * 100)}%`),
          ...(p.receiverFlapEveryMs > 0 ? [`webhook receiver flaps every ${(p.receiverFlapEveryMs / 1000).toFixed(1)} s for about ${(p.receiverFlapMs / 1000).toFixed(1)} s`] : []),
        ]
      : []),
  ].join(', ');
}

function lastLines(text: string, n: number): string[] {
  return text.trim().split('\n').slice(-n).map((l) => l.slice(0, 300));
}
