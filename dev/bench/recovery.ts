import { randomBytes } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import type { Stack } from '../stack';
import { addFault } from '../services/clients';
import { freePort } from '../../src/ports';
import { startOrderSaga } from '../../src/orders/start';
import { dataConverterFromEnv } from '../../src/codec/settings';
import { ORDER_SAGA_V1_WORKFLOW_TYPE, ORDER_SAGA_WORKFLOW_TYPE } from '../../workflows/order/definitions';
import type { OrderInput } from '../../workflows/order/types';
import { spawnEntry, untilReady, type BenchProcess } from './processes';
import { percentile } from './run';

/**
 * How long sagas take to recover from a worker killed (SIGKILL) in the middle of their charges,
 * for each workflow type: orderSaga (its charge an activity on the payments queue, noticed dead by
 * its 5 s heartbeat timeout) and orderSagaV2 (every step a local activity in one workflow task,
 * noticed dead by the workflow task's timeout). Two real worker processes serve a queue; `sagas`
 * sagas start with the provider answering charges after `latencyMs`; once every charge is under
 * way one worker is killed, and each saga's end is timed from the kill. The same run without a
 * kill is the baseline.
 */
export interface RecoveryOptions {
  sagas: number;
  latencyMs: number;
  log: (m: string) => void;
}

export interface RecoveryResult {
  workflowType: string;
  killed: boolean;
  /** From the kill (or, without one, from the moment it would have come) to each saga's end. */
  p50Ms: number;
  maxMs: number;
  completed: number;
}

export async function runRecovery(stack: Stack, opts: RecoveryOptions): Promise<RecoveryResult[]> {
  const run = randomBytes(3).toString('hex');
  const connection = await Connection.connect({ address: stack.temporal.address });
  const client = new Client({ connection, namespace: stack.temporal.namespace, dataConverter: stack.dataConverter ?? dataConverterFromEnv() });
  const env = {
    DATABASE_URL: stack.databaseUrl,
    TEMPORAL_ADDRESS: stack.temporal.address,
    TEMPORAL_NAMESPACE: stack.temporal.namespace,
    PAYMENT_PROVIDER_URL: stack.paymentProviderUrl,
    CARRIER_URL: stack.carrierUrl,
    LOG_LEVEL: 'error',
    ...stack.payloadEnv,
  };
  const results: RecoveryResult[] = [];
  try {
    for (const workflowType of [ORDER_SAGA_V1_WORKFLOW_TYPE, ORDER_SAGA_WORKFLOW_TYPE]) {
      for (const killed of [false, true]) {
        const queue = `recovery-${run}-${workflowType}-${killed ? 'kill' : 'base'}`;
        const workers: BenchProcess[] = [];
        try {
          for (const name of ['a', 'b']) {
            const port = await freePort();
            const p = spawnEntry(`worker ${name}`, 'bin/worker.ts', [], { ...env, TEMPORAL_TASK_QUEUE: queue, METRICS_PORT: String(port) });
            workers.push(p);
            await untilReady(p, `worker ${name}`, 180_000, async () => {
              if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status !== 200) throw new Error('not ready');
            });
          }
          const sku = `recovery-${run}-${workflowType}-${killed}`;
          await stack.db.query('INSERT INTO inventory (sku, on_hand) VALUES ($1, $2)', [sku, opts.sagas + 10]);
          const orders: OrderInput[] = Array.from({ length: opts.sagas }, (_, i) => ({
            orderId: `${sku}-${i}`,
            customerId: 'bench',
            items: [{ sku, quantity: 1 }],
            amount: { amountMinor: 1_000, currency: 'EUR' },
            paymentToken: 'tok_visa',
            shippingAddress: { name: 'Bench', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
          }));
          await addFault(stack.paymentProviderUrl, { kind: 'latency', latency_ms: opts.latencyMs, path: '/charges', keyPrefix: `order-${sku}` });
          const handles = await Promise.all(orders.map((o) => startOrderSaga(client, o, queue, { workflowType })));
          // Every charge under way: its payment row is written before the provider is called.
          for (;;) {
            const { rows } = await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM payments WHERE order_id = ANY($1)', [orders.map((o) => o.orderId)]);
            if (rows[0]!.n === orders.length) break;
            await new Promise((r) => setTimeout(r, 20));
          }
          const t0 = Date.now();
          if (killed) workers[0]!.child.kill('SIGKILL');
          const ends = await Promise.all(
            handles.map(async (h) => {
              const r = (await h.result()) as { status: string };
              return { ms: Date.now() - t0, ok: r.status === 'completed' };
            }),
          );
          const ms = ends.map((e) => e.ms);
          const result = { workflowType, killed, p50Ms: percentile(ms, 50), maxMs: Math.max(...ms), completed: ends.filter((e) => e.ok).length };
          results.push(result);
          opts.log(`${workflowType}${killed ? ', a worker killed' : ''}: p50 ${result.p50Ms} ms, max ${result.maxMs} ms from the ${killed ? 'kill' : 'same moment'}, ${result.completed}/${opts.sagas} completed`);
        } finally {
          await Promise.allSettled(workers.map((w) => w.stop()));
        }
      }
    }
  } finally {
    await connection.close();
  }
  return results;
}

export function formatRecovery(results: RecoveryResult[], opts: Pick<RecoveryOptions, 'sagas' | 'latencyMs'>): string {
  return [
    `${opts.sagas} sagas per run on two worker processes, charges answered after ${opts.latencyMs} ms; one worker SIGKILLed once every charge is under way`,
    '',
    '| workflow type | worker killed | p50 ms to the saga\'s end | max ms | completed |',
    '|---|---|---|---|---|',
    ...results.map((r) => `| ${r.workflowType} | ${r.killed ? 'yes' : 'no'} | ${r.p50Ms} | ${r.maxMs} | ${r.completed} |`),
  ].join('\n');
}
