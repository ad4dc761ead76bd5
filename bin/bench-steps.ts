import { performance } from 'node:perf_hooks';
import type { PoolClient } from 'pg';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../activities';
import { loadConfig } from '../src/config';
import { startStack } from '../dev/stack';
import { stepKey, undoKey } from '@sagaflow/toolkit/workflow';
import { Step } from '../workflows/order/steps';
import { runMain } from '../src/run-main';

const USAGE = `usage: npm run bench:steps -- [N]

Prints, per step, the database round trips, the latency and this process's CPU
(the worker's side: the ledger, the driver, the HTTP client) of a first execution
and of a duplicate, over N executions (100). Figures, not assertions.`;

/**
 * Prints, per step, the database round trips and the latency of a first
 * execution and of a duplicate. Figures, not assertions: run it and read them.
 * `npm run bench:steps -- 200` sets the number of sagas' worth of steps.
 */
runMain(USAGE, async () => {
  const n = Number(process.argv[2] ?? 100);
  const config = loadConfig({ ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' });
  const stack = await startStack(config, () => undefined);
  let roundTrips = 0;
  stack.db.on('connect', (client: PoolClient) => {
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: (...a: unknown[]) => unknown }).query = (...args: unknown[]) => {
      roundTrips += 1;
      return query(...args);
    };
  });
  const acts = createActivities({
    db: stack.db,
    paymentProviderUrl: stack.paymentProviderUrl,
    carrierUrl: stack.carrierUrl,
    providerTimeoutMs: config.PROVIDER_TIMEOUT_MS,
  });
  const run = `bench-${Date.now().toString(36)}`;
  const sku = `${run}-sku`;
  await stack.db.query('INSERT INTO inventory (sku, on_hand) VALUES ($1, $2)', [sku, n * 2]);

  const rows: Record<string, string | number>[] = [];
  const wf = (i: number) => `order-${run}-${i}`;
  // Each saga's steps run as activities of its own workflow: the ledger refuses a key of another.
  const envs = Array.from({ length: n }, (_, i) => new MockActivityEnvironment({ workflowExecution: { workflowId: wf(i), runId: run } }));
  const measure = async (step: string, call: (i: number) => Promise<unknown>) => {
    for (const label of ['first', 'duplicate']) {
      const before = roundTrips;
      const times: number[] = [];
      const cpu = process.cpuUsage();
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await envs[i]!.run(() => call(i));
        times.push(performance.now() - t0);
      }
      const used = process.cpuUsage(cpu);
      times.sort((a, b) => a - b);
      rows.push({
        step,
        execution: label,
        'db round trips': (roundTrips - before) / n,
        'p50 ms': +times[Math.floor(n / 2)]!.toFixed(2),
        'p99 ms': +times[Math.min(n - 1, Math.floor(n * 0.99))]!.toFixed(2),
        'CPU ms': +((used.user + used.system) / 1000 / n).toFixed(2),
      });
    }
  };
  const order = (i: number) => ({
    orderId: `${run}-${i}`,
    customerId: 'bench',
    items: [{ sku, quantity: 1 }],
    amount: { amountMinor: 1000, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'B', line1: 'B', city: 'B', postalCode: 'B', country: 'DE' },
  });
  await measure(Step.recordOrder, (i) => acts.recordOrder({ key: stepKey(wf(i), Step.recordOrder), order: order(i) }));
  await measure(Step.reserveInventory, (i) =>
    acts.reserveInventory({ key: stepKey(wf(i), Step.reserveInventory), orderId: order(i).orderId, items: order(i).items }),
  );
  await measure(Step.fraudCheck, (i) =>
    acts.checkFraud({ key: stepKey(wf(i), Step.fraudCheck), orderId: order(i).orderId, amount: order(i).amount, paymentToken: 'tok_visa' }),
  );
  await measure(Step.chargePayment, (i) =>
    acts.chargePayment({ key: stepKey(wf(i), Step.chargePayment), orderId: order(i).orderId, amount: order(i).amount, paymentToken: 'tok_visa' }),
  );
  await measure(Step.createShipment, (i) =>
    acts.createShipment({ key: stepKey(wf(i), Step.createShipment), orderId: order(i).orderId, address: order(i).shippingAddress, items: order(i).items }),
  );
  await measure(Step.completeOrder, (i) => acts.completeOrder({ key: stepKey(wf(i), Step.completeOrder), orderId: order(i).orderId }));
  await measure(`${Step.chargePayment}/undo`, (i) =>
    acts.refundPayment({ key: undoKey(wf(i), Step.chargePayment), orderId: order(i).orderId }),
  );
  await measure(`${Step.reserveInventory}/undo`, (i) =>
    acts.releaseInventory({ key: undoKey(wf(i), Step.reserveInventory), orderId: order(i).orderId }),
  );
  console.log(`${n} executions per row; round trips are the sagaflow database's only (the provider's own are not counted)`);
  console.table(rows);
  await stack.stop();
});
