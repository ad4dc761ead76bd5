import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { loadConfig } from '../src/config';
import { startStack } from '../dev/stack';
import { auditBooks, auditSummary, reconcileStock, violationsOf } from '../src/orders/audit';
import { orderBooks, reconcileSimulatedServices } from '../dev/services/reconcile';
import { createApiClient } from '../src/api/auth';
import { addFault, clearFaults } from '../dev/services/clients';
import type { CreateOrderRequest, OrderView } from '../src/api/schemas';
import { startApi } from '../src/api/server';
import { createSagaWorker } from '../workers/worker';
import { EXTERNAL_STEP_ATTEMPTS } from '../workflows/order/activity-options';
import { Step } from '../workflows/order/steps';
import { runMain, untilStopSignal } from '../src/run-main';

interface Scenario {
  name: string;
  body: CreateOrderRequest;
  /** A fault rule armed on a service for this scenario only: [service url, rule]. */
  fault?: [string, Record<string, unknown>];
  cancelDuring?: string;
}

const keepRunning = process.argv.includes('--keep-running');

const USAGE = `usage: npm run demo -- [--keep-running]

Brings up the stack and the API, sends one order per path (success, out of
stock, declined card, carrier outage, customer cancel), prints each outcome and
the books, and exits 0 when every order reconciles. --keep-running leaves the
stack up afterwards.`;

/**
 * Brings up the stack and the HTTP API, sends one order per path (success, out
 * of stock, declined card, carrier outage, customer cancel) through the API,
 * prints each outcome and then the books as the database has them. Exits 0 when
 * every order reconciles.
 */
runMain(USAGE, async () => {
  const config = loadConfig();
  // Core's own log lines are forwarded to the same logger (no raw coloured lines from the native layer).
  Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' }, forward: {} } } });
  const log = (m: string) => console.log(`[stack] ${m}`);
  const stack = await startStack(config, log);
  const taskQueue = config.TEMPORAL_TASK_QUEUE;
  const nativeConnection = await NativeConnection.connect({ address: stack.temporal.address });
  const worker = await createSagaWorker({
    connection: nativeConnection,
    namespace: stack.temporal.namespace,
    taskQueue,
    dataConverter: stack.dataConverter,
    deps: {
      db: stack.db,
      paymentProviderUrl: stack.paymentProviderUrl,
      carrierUrl: stack.carrierUrl,
      providerTimeoutMs: config.PROVIDER_TIMEOUT_MS,
    },
  });
  const running = worker.run();
  const connection = await Connection.connect({ address: stack.temporal.address });
  const client = new Client({ connection, namespace: stack.temporal.namespace, dataConverter: stack.dataConverter });
  const api = await startApi({ db: stack.db, temporal: client, taskQueue, log: () => undefined });
  log(`API: ${api.url}`);

  const run = Date.now().toString(36);
  const { apiKey } = await createApiClient(stack.db, `demo-${run}`);
  const sku = (s: string) => `${s}-${run}`;
  // Known starting stock: the audit proves every unit is on the shelf or shipped.
  const initialStock = { [sku('widget')]: 20, [sku('gadget')]: 10, [sku('rare-gem')]: 1 };
  await stack.db.query(
    `INSERT INTO inventory (sku, on_hand) SELECT * FROM unnest($1::text[], $2::int[])`,
    [Object.keys(initialStock), Object.values(initialStock)],
  );
  const base = (over: Partial<CreateOrderRequest> = {}): CreateOrderRequest => ({
    customerId: 'cust-demo',
    items: [{ sku: sku('widget'), quantity: 2 }],
    amount: { amountMinor: 2_500, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada Lovelace', line1: '12 St James Sq', city: 'London', postalCode: 'SW1Y 4JH', country: 'GB' },
    ...over,
  });
  const scenarios: Scenario[] = [
    { name: 'success', body: base() },
    {
      name: 'success, 2 items',
      body: base({
        items: [{ sku: sku('widget'), quantity: 1 }, { sku: sku('gadget'), quantity: 3 }],
        amount: { amountMinor: 7_990, currency: 'EUR' },
      }),
    },
    { name: 'out of stock', body: base({ items: [{ sku: sku('rare-gem'), quantity: 5 }] }) },
    { name: 'declined card', body: base({ paymentToken: 'tok_decline' }) },
    // Down through every attempt of the shipment step, then back for its undo to learn there is no label to keep.
    {
      name: 'carrier outage',
      body: base(),
      fault: [stack.carrierUrl, { kind: 'error', path: '/shipments', times: EXTERNAL_STEP_ATTEMPTS }],
    },
    {
      name: 'customer cancel',
      body: base(),
      fault: [stack.paymentProviderUrl, { kind: 'latency', latency_ms: 1500, path: '/charges', times: 1 }],
      cancelDuring: Step.chargePayment,
    },
  ];

  const call = async (method: string, path: string, body?: unknown, key?: string) => {
    const res = await fetch(`${api.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${apiKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(key ? { 'idempotency-key': key } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, replayed: res.headers.get('idempotent-replayed') === 'true', view: (await res.json()) as OrderView };
  };
  const settle = async (id: string): Promise<OrderView> => {
    for (;;) {
      const { view } = await call('GET', `/orders/${id}`);
      if (view.status !== 'pending' && view.saga.status !== 'running' && view.saga.status !== 'compensating') return view;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const play = async (s: Scenario): Promise<[Scenario, OrderView, boolean]> => {
    const key = `demo-${run}-${s.name.replace(/\W+/g, '-')}`;
    if (s.fault) await addFault(...s.fault);
    const first = await call('POST', '/orders', s.body, key);
    if (first.status !== 201) throw new Error(`POST /orders answered ${first.status}: ${JSON.stringify(first.view)}`);
    // A client retrying its request gets the same order back, never a second saga.
    const retry = await call('POST', '/orders', s.body, key);
    const id = first.view.id;
    if (s.cancelDuring) {
      for (let v = first.view; v.saga.currentStep !== s.cancelDuring && v.status === 'pending'; ) {
        await new Promise((r) => setTimeout(r, 50));
        v = (await call('GET', `/orders/${id}`)).view;
      }
      const c = await call('POST', `/orders/${id}/cancel`, { reason: 'customer cancelled' });
      if (c.status !== 202) throw new Error(`cancel answered ${c.status}`);
    }
    const final = await settle(id);
    if (s.fault) await clearFaults(s.fault[0]);
    return [s, final, retry.replayed && retry.view.id === id];
  };

  console.log(`\nSending ${scenarios.length} orders through ${api.url} (task queue "${taskQueue}")...`);
  // Scenarios with a fault run alone, so the fault touches only their order.
  const results = await Promise.all(scenarios.filter((s) => !s.fault).map(play));
  for (const s of scenarios.filter((x) => x.fault)) results.push(await play(s));

  console.log('\nOrders');
  console.table(
    results.map(([s, v, replayed]) => ({
      scenario: s.name,
      order: v.id,
      outcome: v.saga.status,
      failure: v.saga.failure?.type ?? '',
      steps: v.saga.completedSteps?.length ?? 0,
      compensations: (v.saga.compensations ?? []).map((c) => `${c.step}${c.attempts > 1 ? ` x${c.attempts}` : ''}`).join(' <- '),
      'retried POST replayed': replayed ? 'yes' : 'NO',
    })),
  );

  // Every saga has closed: the books audit of these orders, settled, against the known starting stock.
  const orderIds = results.map(([, v]) => v.id);
  const audit = await auditBooks(stack.db, { orderIds, settled: true, initialStock, checks: [reconcileSimulatedServices] });
  const books = await orderBooks(stack.db, orderIds);
  console.log('Books (from the database)');
  console.table(
    books.map((b) => ({
      order: b.orderId,
      status: b.status,
      amount: b.amountMinor,
      'net charged': b.netChargedMinor,
      'active labels': b.activeShipments,
      'units held': b.heldUnits,
      'units shipped': b.consumedUnits,
      balanced: violationsOf(audit, b.orderId).length === 0 ? 'yes' : 'NO',
    })),
  );
  const stock = (await reconcileStock(stack.db)).filter((r) => r.sku in initialStock);
  console.table(
    stock.map((r) => ({ sku: r.sku, 'started with': initialStock[r.sku], 'on hand': r.onHand, reserved: r.reserved, 'held by reservations': r.held })),
  );
  const completedAmount = books.filter((b) => b.status === 'completed').reduce((a, b) => a + b.amountMinor, 0);
  const netCharged = books.reduce((a, b) => a + b.netChargedMinor, 0);
  console.log(`Money: ${netCharged} minor units held by the provider, ${completedAmount} owed by completed orders.`);
  console.log(auditSummary(audit));
  const problems = audit.violations.concat(
    results.filter(([, , replayed]) => !replayed).map(([s]) => `${s.name}: the retried POST was not a replay`),
  );
  console.log(problems.length === 0 ? 'Books balance: no money without a shipment, no stock held for a dead order.' : `PROBLEMS:\n  ${problems.join('\n  ')}`);
  if (stack.temporal.uiUrl) console.log(`\nTemporal UI: ${stack.temporal.uiUrl}/namespaces/${stack.temporal.namespace}/workflows`);

  if (keepRunning) {
    console.log('Still running (--keep-running); Ctrl-C to stop.');
    await untilStopSignal();
  }
  await api.close();
  worker.shutdown();
  await running;
  await nativeConnection.close();
  await connection.close();
  await stack.stop();
  return problems.length === 0 ? 0 : 1;
});

