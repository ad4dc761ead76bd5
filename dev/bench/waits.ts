import { randomBytes } from 'node:crypto';
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import type { Stack } from '../stack';
import { createApiClient } from '../../src/api/auth';
import { startApi } from '../../src/api/server';
import { clientConnectionOptions } from '../../src/temporal-connect';
import { callCounter } from '../grpc-calls';
import { percentile } from './run';
import { dataConverterFromEnv } from '../../src/codec/settings';

export interface WaitsOptions {
  /** Requests fired at once. */
  requests: number;
  /** The `?wait=` each request asks for, in ms. */
  waitMs: number;
  log: (m: string) => void;
}

export interface WaitsReport {
  requests: number;
  waitMs: number;
  /** HTTP statuses answered, with their counts. */
  statuses: Record<string, number>;
  /** The saga status each 201 reported, with their counts. */
  sagaStatuses: Record<string, number>;
  /** Answer times from the request sent to its body read, in ms (the client shares this process with the API). */
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The same as the API logs them: from the request's arrival to its answer, in ms. */
  server: { p50Ms: number; p99Ms: number; maxMs: number };
  /** The most result long polls (GetWorkflowExecutionHistory) the API had open at once. */
  peakResultPolls: number;
  /** Result long polls the API still had open once every request was answered. */
  resultPollsLeftOpen: number;
}

/**
 * `POST /orders?wait=` under load: `requests` waits fired at once at an API whose sagas run on a
 * task queue no worker polls, so none of them ends and every request waits its whole bound.
 * Measures how long each takes to be answered, and whether the API's long polls for the sagas'
 * results end with the waits (counted on the API's own Temporal connection).
 */
export async function runWaits(stack: Stack, opts: WaitsOptions): Promise<WaitsReport> {
  const run = randomBytes(3).toString('hex');
  const counter = callCounter();
  const connection = await Connection.connect(
    clientConnectionOptions({
      address: stack.temporal.address,
      interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions()), counter.interceptor],
    }),
  );
  const client = new Client({ connection, namespace: stack.temporal.namespace, dataConverter: stack.dataConverter ?? dataConverterFromEnv() });
  const served: number[] = [];
  const log = (line: Record<string, unknown>) => {
    if (line.msg === 'request' && line.route === '/orders' && typeof line.durationMs === 'number') served.push(line.durationMs);
  };
  const api = await startApi({ db: stack.db, temporal: client, taskQueue: `bench-waits-${run}`, log, recoveryIntervalMs: 0 });
  const workflowIds: string[] = [];
  try {
    const { apiKey } = await createApiClient(stack.db, `bench-waits-${run}`);
    const post = async (n: string, waitMs: number) => {
      const t0 = performance.now();
      const res = await fetch(`${api.url}/orders?wait=${waitMs}ms`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'idempotency-key': `waits-${run}-${n}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          customerId: 'bench',
          items: [{ sku: `bench-waits-${run}`, quantity: 1 }],
          amount: { amountMinor: 1_000, currency: 'EUR' },
          paymentToken: 'tok_visa',
          shippingAddress: { name: 'Bench', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
        }),
      });
      const view = (await res.json().catch(() => undefined)) as { saga?: { workflowId?: string; status?: string } } | undefined;
      if (view?.saga?.workflowId) workflowIds.push(view.saga.workflowId);
      return { ms: performance.now() - t0, status: res.status, saga: view?.saga?.status ?? '-' };
    };
    // Connections, the first workflow start and the API's first queries are not what is measured.
    await post('warm', 0);
    served.length = 0;
    opts.log(`firing ${opts.requests} requests with ?wait=${opts.waitMs}ms at once`);
    const answers = await Promise.all(Array.from({ length: opts.requests }, (_, i) => post(String(i), opts.waitMs)));
    const resultPollsLeftOpen = counter.open('GetWorkflowExecutionHistory');
    const count = (values: string[]) => Object.fromEntries([...new Set(values)].sort().map((v) => [v, values.filter((x) => x === v).length]));
    const ms = answers.map((a) => a.ms);
    return {
      requests: opts.requests,
      waitMs: opts.waitMs,
      statuses: count(answers.map((a) => String(a.status))),
      sagaStatuses: count(answers.filter((a) => a.status === 201).map((a) => a.saga)),
      p50Ms: percentile(ms, 50),
      p99Ms: percentile(ms, 99),
      maxMs: Math.max(...ms),
      server: { p50Ms: percentile(served, 50), p99Ms: percentile(served, 99), maxMs: Math.max(...served) },
      peakResultPolls: counter.peak('GetWorkflowExecutionHistory'),
      resultPollsLeftOpen,
    };
  } finally {
    await api.close();
    // Nothing would ever run these sagas: end them rather than leave them on the server.
    await Promise.allSettled(workflowIds.map((id) => client.workflow.getHandle(id).terminate('benchmark over')));
    await connection.close();
  }
}

export function formatWaits(r: WaitsReport): string {
  const tally = (o: Record<string, number>) => Object.entries(o).map(([k, v]) => `${k} ×${v}`).join(', ') || '-';
  return [
    `${r.requests} concurrent POST /orders?wait=${r.waitMs}ms, sagas on a queue no worker polls (none ends within the wait)`,
    '',
    '| answers | saga status | p50 ms | p99 ms | max ms | API-side p50 / p99 / max ms | result polls open at peak | left open after the answers |',
    '|---|---|---|---|---|---|---|---|',
    `| ${tally(r.statuses)} | ${tally(r.sagaStatuses)} | ${r.p50Ms.toFixed(0)} | ${r.p99Ms.toFixed(0)} | ${r.maxMs.toFixed(0)} | ` +
      `${r.server.p50Ms.toFixed(0)} / ${r.server.p99Ms.toFixed(0)} / ${r.server.maxMs.toFixed(0)} | ${r.peakResultPolls} | ${r.resultPollsLeftOpen} |`,
  ].join('\n');
}
