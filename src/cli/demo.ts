import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { loadConfig } from '../config';
import { startStack } from '../dev/stack';
import { reconcileOrder, reconcileStock } from '../orders/reconcile';
import { startOrderSaga } from '../orders/start';
import { createSagaWorker } from '../../workers/worker';
import { cancelUpdate, statusQuery } from '../../workflows/order-saga';
import { Step } from '../../workflows/steps';
import type { OrderInput, OrderSagaResult } from '../../workflows/types';
import { runMain } from './run';

interface Scenario {
  name: string;
  order: OrderInput;
  /** Fault rules to arm before the saga starts: [service url, rule]. */
  faults?: [string, Record<string, unknown>][];
  cancelDuring?: string;
}

const keepRunning = process.argv.includes('--keep-running');

/**
 * Brings up the stack, runs one saga per path (success, out of stock, declined
 * card, carrier outage, customer cancel), prints each outcome and then the books
 * as the database has them. Exits 0 when every order reconciles.
 */
runMain(async () => {
  const config = loadConfig();
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  const log = (m: string) => console.log(`[stack] ${m}`);
  const stack = await startStack(config, log);
  const taskQueue = config.TEMPORAL_TASK_QUEUE;
  const nativeConnection = await NativeConnection.connect({ address: stack.temporal.address });
  const worker = await createSagaWorker({
    connection: nativeConnection,
    namespace: stack.temporal.namespace,
    taskQueue,
    deps: {
      db: stack.db,
      paymentProviderUrl: stack.paymentProviderUrl,
      carrierUrl: stack.carrierUrl,
      providerTimeoutMs: config.PROVIDER_TIMEOUT_MS,
    },
  });
  const running = worker.run();
  const connection = await Connection.connect({ address: stack.temporal.address });
  const client = new Client({ connection, namespace: stack.temporal.namespace });

  const run = Date.now().toString(36);
  const sku = (s: string) => `${s}-${run}`;
  await stack.db.query(
    `INSERT INTO inventory (sku, on_hand) SELECT * FROM unnest($1::text[], $2::int[])`,
    [[sku('widget'), sku('gadget'), sku('rare-gem')], [20, 10, 1]],
  );
  const base = (n: string, over: Partial<OrderInput> = {}): OrderInput => ({
    orderId: `demo-${run}-${n}`,
    customerId: 'cust-demo',
    items: [{ sku: sku('widget'), quantity: 2 }],
    amount: { amountMinor: 2_500, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada Lovelace', line1: '12 St James Sq', city: 'London', postalCode: 'SW1Y 4JH', country: 'GB' },
    ...over,
  });
  const keyPrefix = (o: OrderInput) => `order-${o.orderId}/`;
  const scenarios: Scenario[] = [
    { name: 'success', order: base('1') },
    {
      name: 'success, 2 items',
      order: base('2', {
        items: [{ sku: sku('widget'), quantity: 1 }, { sku: sku('gadget'), quantity: 3 }],
        amount: { amountMinor: 7_990, currency: 'EUR' },
      }),
    },
    { name: 'out of stock', order: base('3', { items: [{ sku: sku('rare-gem'), quantity: 5 }] }) },
    { name: 'declined card', order: base('4', { paymentToken: 'tok_decline' }) },
    { name: 'carrier outage', order: base('5') },
    { name: 'customer cancel', order: base('6'), cancelDuring: Step.chargePayment },
  ];
  scenarios[4]!.faults = [[stack.carrierUrl, { kind: 'error', path: '/shipments', keyPrefix: keyPrefix(scenarios[4]!.order) }]];
  scenarios[5]!.faults = [[stack.paymentProviderUrl, { kind: 'latency', latency_ms: 1500, keyPrefix: keyPrefix(scenarios[5]!.order) }]];

  for (const s of scenarios) {
    for (const [url, rule] of s.faults ?? []) {
      const res = await fetch(`${url}/__faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(rule) });
      if (!res.ok) throw new Error(`fault rule refused: ${await res.text()}`);
    }
  }
  console.log(`\nRunning ${scenarios.length} sagas on task queue "${taskQueue}"...`);
  const results = await Promise.all(
    scenarios.map(async (s): Promise<[Scenario, OrderSagaResult]> => {
      const handle = await startOrderSaga(client, s.order, taskQueue);
      if (s.cancelDuring) {
        for (;;) {
          const st = await handle.query(statusQuery);
          if (st.currentStep === s.cancelDuring || st.phase !== 'running') break;
          await new Promise((r) => setTimeout(r, 50));
        }
        await handle.executeUpdate(cancelUpdate, { args: [{ reason: 'customer cancelled' }] });
      }
      return [s, await handle.result()];
    }),
  );

  console.log('\nOrders');
  console.table(
    results.map(([s, r]) => ({
      scenario: s.name,
      order: r.orderId,
      outcome: r.status,
      failure: r.failure ? r.failure.type : '',
      steps: r.completedSteps.length,
      compensations: r.compensations.map((c) => `${c.step}${c.attempts > 1 ? ` x${c.attempts}` : ''}`).join(' <- '),
    })),
  );

  const books = await Promise.all(results.map(([, r]) => reconcileOrder(stack.db, r.orderId)));
  console.log('Reconciliation (from the database)');
  console.table(
    books.map((b) => ({
      order: b.orderId,
      status: b.status,
      amount: b.amountMinor,
      'net charged': b.netChargedMinor,
      'active labels': b.activeShipments,
      'units held': b.heldUnits,
      'units shipped': b.consumedUnits,
      balanced: b.problems.length === 0 ? 'yes' : b.problems.join('; '),
    })),
  );
  const stock = (await reconcileStock(stack.db)).filter((r) => r.sku.endsWith(run));
  console.table(stock.map((r) => ({ sku: r.sku, 'on hand': r.onHand, reserved: r.reserved, 'held by reservations': r.held })));
  const completedAmount = books.filter((b) => b.status === 'completed').reduce((a, b) => a + b.amountMinor, 0);
  const netCharged = books.reduce((a, b) => a + b.netChargedMinor, 0);
  const problems = books.flatMap((b) => b.problems).concat(
    stock.filter((r) => r.reserved !== r.held).map((r) => `${r.sku}: reserved ${r.reserved} != held ${r.held}`),
    netCharged === completedAmount ? [] : [`net charged ${netCharged} != completed orders ${completedAmount}`],
  );
  console.log(`Money: ${netCharged} minor units held by the provider = ${completedAmount} for completed orders.`);
  console.log(problems.length === 0 ? 'Ledger reconciled: no money without a shipment, no stock held for a dead order.' : `PROBLEMS:\n  ${problems.join('\n  ')}`);
  if (stack.temporal.uiUrl) console.log(`\nTemporal UI: ${stack.temporal.uiUrl}/namespaces/${stack.temporal.namespace}/workflows`);

  if (keepRunning) {
    console.log('Still running (--keep-running); Ctrl-C to stop.');
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  }
  worker.shutdown();
  await running;
  await nativeConnection.close();
  await connection.close();
  await stack.stop();
  return problems.length === 0 ? 0 : 1;
});
