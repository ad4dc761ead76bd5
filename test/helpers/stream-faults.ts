import type { ChildProcess } from 'node:child_process';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Client } from '@temporalio/client';
import type { Db } from '../../src/db/pool';
import { orderWorkflowId } from '../../workflows/order/ids';
import { startNatsServer, type NatsServer } from '../../dev/nats';
import { startEntry } from './processes';
import { until } from './until';

export { until };

/**
 * What the stream-door fault tests (a broker or a database taken away under the running
 * intake and relay processes) share: a producer that retries as a real one does, polls on
 * durable state, and the read-back of what the streams, the rows and Temporal hold.
 */

/** An order request as the stream carries it, for a customer named after the message. */
export function orderMessageBody(customerId: string, sku: string): string {
  return JSON.stringify({
    customerId,
    items: [{ sku, quantity: 1 }],
    amount: { amountMinor: 1_250, currency: 'EUR' },
    paymentToken: 'tok_visa',
    shippingAddress: { name: 'Ada', line1: '1 Main St', city: 'Berlin', postalCode: '10115', country: 'DE' },
  });
}

/**
 * A producer as a real one is: a publish that fails or goes unanswered (the server away
 * or restarting) is sent again with the same Nats-Msg-Id until the stream acknowledges it;
 * the broker's duplicate window drops a copy of one that was stored after all.
 */
export function retryingPublisher(nc: NatsConnection, subject: string) {
  const js = jetstream(nc, { timeout: 2000 });
  return async (msgId: string, body: string): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await js.publish(subject, body, { msgID: msgId });
        return;
      } catch (err) {
        if (attempt >= 600) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  };
}

/** Every message a stream holds now: its sequence and Nats-Msg-Id. Reads are asked again while the server settles. */
export async function streamMessageIds(nc: NatsConnection, stream: string): Promise<{ seq: number; msgId: string | undefined }[]> {
  const jsm = await jetstreamManager(nc);
  const info = await until(() => jsm.streams.info(stream), () => true, `info of stream ${stream}`, 100);
  const out: { seq: number; msgId: string | undefined }[] = [];
  if (info.state.messages === 0) return out;
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await until(() => jsm.streams.getMessage(stream, { seq }), (v) => v !== null, `message ${seq} of ${stream}`, 100);
    out.push({ seq, msgId: m!.header?.get('Nats-Msg-Id') || undefined });
  }
  return out;
}

/** How many messages a stream holds (a dead-letter stream's count). */
export async function streamCount(nc: NatsConnection, stream: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.info(stream)).state.messages;
}

/** The durable consumer has nothing left to deliver and nothing unacknowledged. */
export async function consumerSettled(nc: NatsConnection, stream: string, consumer: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await until(
    () => jsm.consumers.info(stream, consumer),
    (i) => i.num_pending === 0 && i.num_ack_pending === 0,
    `consumer ${consumer} settled`,
    // Deliveries whose ack was lost with the connection come back after the ack wait (30 s).
    1800,
  );
}

/** Each inbox record of the source joined to the order it created. */
export async function inboxOrders(
  db: Db,
  source: string,
): Promise<{ message_id: string; order_id: string | null; customer_id: string | null; workflow_id: string | null; saga_started: boolean; status: string | null }[]> {
  const { rows } = await db.query(
    `SELECT i.message_id, o.id AS order_id, o.customer_id, o.workflow_id, o.saga_started_at IS NOT NULL AS saga_started, o.status
       FROM inbox_messages i LEFT JOIN orders o ON o.id = i.resource_id
      WHERE i.source = $1`,
    [source],
  );
  return rows;
}

/** Every workflow execution on the task queue, as Temporal's visibility lists it: its ID and status. */
export async function sagasOnQueue(client: Client, taskQueue: string): Promise<{ workflowId: string; status: string }[]> {
  const out: { workflowId: string; status: string }[] = [];
  for await (const wf of client.workflow.list({ query: `TaskQueue = '${taskQueue}'` })) out.push({ workflowId: wf.workflowId, status: wf.status.name });
  return out.sort((a, b) => (a.workflowId < b.workflowId ? -1 : a.workflowId > b.workflowId ? 1 : 0));
}

/** The saga IDs the orders must have, sorted. */
export const sagaIdsOf = (orderIds: string[]): string[] => orderIds.map(orderWorkflowId).sort();

/** Alive: neither exited nor killed (the process must ride out the fault, not end). */
export const alive = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null;

/** Sends the signal and waits for the exit; resolves with the exit code. */
export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (!alive(child)) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill(signal);
  return exited;
}

/**
 * Runs a test's body; a failure carries the last lines each process printed (log lines of
 * routine successes left out), for whoever reads the failure. Nothing is asserted on them.
 */
export async function explainedByOutput(outputs: Map<string, () => string>, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (err) {
    const tails = [...outputs].map(([name, out]) => {
      const lines = out().split('\n').filter((l) => !/"msg":"(message processed|events published)"/.test(l));
      return `--- ${name} (last lines)\n${lines.slice(-40).join('\n')}`;
    });
    if (err instanceof Error && tails.length) err.message += `\n${tails.join('\n')}`;
    throw err;
  }
}

/**
 * Starts `entry` against a NATS of its own without JetStream (connected, every JetStream request
 * refused, as a NATS just restarted or a cluster electing answers), waits until it has retried
 * twice and is still alive, then starts that NATS again with JetStream on the same port. The caller
 * stops `nats` (and the child) when done.
 */
export async function startBeforeJetStream(
  entry: string,
  env: NodeJS.ProcessEnv,
): Promise<{ child: ChildProcess; out: () => string; nats: NatsServer }> {
  const bare = await startNatsServer({ jetstream: false });
  try {
    const { child, out } = await startEntry(entry, { ...env, NATS_URL: bare.url }, 'NATS JetStream unreachable; retrying');
    await until(async () => (out().match(/NATS JetStream unreachable; retrying/g) ?? []).length, (n) => n >= 2 || child.exitCode !== null, 'a second try');
    await bare.stop();
    return { child, out, nats: await startNatsServer({ port: bare.port }) };
  } catch (err) {
    await bare.stop();
    throw err;
  }
}
