import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Client } from '@temporalio/client';
import { createApiClient } from '../../src/api/auth';
import { startApi, type RunningApi } from '../../src/api/server';
import { startTracing, type Tracing } from '../../src/observability/tracing';
import { createSagaWorker, type SagaWorker } from '../../workers/worker';
import { createTestContext, seedInventory, uniqueId, type TestContext } from '../helpers/context';

/** An OTLP/HTTP receiver on loopback: what a collector would get. */
interface Received {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  serviceName: string;
  attributes?: { key: string; value: { stringValue?: string; intValue?: string | number } }[];
}
const spans: Received[] = [];
let receiver: http.Server;
let ctx: TestContext;
let tracing: Tracing;
let worker: SagaWorker;
let api: RunningApi;
let apiKey: string;
const taskQueue = uniqueId('traced');

beforeAll(async () => {
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const doc = JSON.parse(body) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue?: string } }[] };
          scopeSpans: { spans: Omit<Received, 'serviceName'>[] }[];
        }[];
      };
      for (const rs of doc.resourceSpans) {
        const serviceName = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, serviceName });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

  ctx = await createTestContext('trace');
  tracing = startTracing({ endpoint, serviceName: 'sagaflow-test' })!;
  worker = await createSagaWorker({
    connection: ctx.nativeConnection,
    namespace: ctx.namespace,
    taskQueue,
    deps: ctx.deps,
    plugins: [tracing.plugin],
  });
  ctx.startWorker(worker);
  const temporal = new Client({ connection: ctx.client.connection, namespace: ctx.namespace, dataConverter: ctx.dataConverter, plugins: [tracing.plugin] });
  api = await startApi({ db: ctx.db, temporal, taskQueue, log: () => undefined });
  apiKey = (await createApiClient(ctx.db, uniqueId('tracer'))).apiKey;
});

afterAll(async () => {
  await api?.close();
  await ctx?.close();
  await tracing?.shutdown();
  await new Promise((r) => receiver?.close(r));
});

test('one trace runs from the API through the workflow and its activities to the provider calls', async () => {
  const sku = uniqueId('sku');
  await seedInventory(ctx.db, { [sku]: 3 });
  const res = await fetch(`${api.url}/orders?wait=15s`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', 'idempotency-key': uniqueId('k') },
    body: JSON.stringify({
      customerId: 'c',
      items: [{ sku, quantity: 1 }],
      amount: { amountMinor: 1_000, currency: 'EUR' },
      paymentToken: 'tok_visa',
      shippingAddress: { name: 'A', line1: 'B', city: 'C', postalCode: 'D', country: 'DE' },
    }),
  });
  expect(res.status).toBe(201);
  expect(((await res.json()) as { saga: { status: string } }).saga.status).toBe('completed');
  await tracing.flush();

  const root = spans.find((s) => s.name === 'POST /orders');
  expect(root).toBeDefined();
  const trace = spans.filter((s) => s.traceId === root!.traceId).map((s) => s.name);
  for (const name of [
    'StartWorkflow:orderSagaV2',
    'RunWorkflow:orderSagaV2',
    'RunActivity:reserveInventory',
    'RunActivity:chargePayment',
    'POST /charges',
    'RunActivity:createShipment',
    'POST /shipments',
  ]) {
    expect(trace).toContain(name);
  }
  // The provider call is a child of the activity that made it.
  const charge = spans.find((s) => s.traceId === root!.traceId && s.name === 'POST /charges')!;
  const parent = spans.find((s) => s.spanId === charge.parentSpanId);
  expect(parent?.name).toBe('RunActivity:chargePayment');
  // What an operator searches a provider call by: its method, address, step key and answer.
  const attributes = Object.fromEntries((charge.attributes ?? []).map((a) => [a.key, a.value.stringValue ?? String(a.value.intValue)]));
  expect(attributes).toMatchObject({
    'http.request.method': 'POST',
    'url.full': `${ctx.deps.paymentProviderUrl}/charges`,
    'sagaflow.idempotency_key': expect.stringMatching(/^order-.+\/charge-payment$/),
    'http.response.status_code': '200',
  });
});
