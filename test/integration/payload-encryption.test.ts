/**
 * Payload encryption against the real server: what Temporal keeps of a saga (its
 * history, read raw, without the codec) holds no payment token and no shipping
 * address; the codec server decodes it for whoever holds its token, through
 * plain HTTP and through the Temporal CLI, and for nobody else; a key rotation
 * in the middle of a saga leaves a history that replays with both keys and fails
 * clearly with the new one alone; altered ciphertext is refused.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { findBuiltTemporalCli } from '../../dev/temporal';
import { EncryptionCodec } from '../../src/codec/encryption-codec';
import { parsePayloadKeys } from '../../src/codec/keys';
import { startCodecServer, type RunningCodecServer } from '../../src/codec/server';
import { dataConverterFromEnv } from '../../src/codec/settings';
import { startOrderSaga } from '../../src/orders/start';
import { ORDER_SAGA_V1_WORKFLOW_TYPE } from '../../workflows/order/definitions';
import { captureHistories } from '../../packages/toolkit/src/replay/capture';
import { loadCases, sealingKeyIds } from '../../packages/toolkit/src/replay/fixtures';
import { describeOutcome, replayAll } from '../../packages/toolkit/src/replay/replay';
import { createSagaWorker, orderSagaReplayOptions } from '../../workers/worker';
import { addFault, createTestContext, orderInput, seedInventory, uniqueId, type TestContext } from '../helpers/context';
import { EXTERNAL_STEP_ATTEMPTS as SHIPMENT_ATTEMPTS } from '../../workflows/order/activity-options';

type History = temporal.api.history.v1.IHistory;

let ctx: TestContext;
/** Reads what the server keeps, as anyone with Temporal access does: no codec. */
let raw: Client;
const taskQueue = uniqueId('sealed');
const token = randomBytes(24).toString('base64url');

beforeAll(async () => {
  ctx = await createTestContext('sealed');
  raw = new Client({ connection: ctx.client.connection, namespace: ctx.namespace });
  ctx.startWorker(await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue, deps: ctx.deps }));
});

afterAll(async () => {
  await ctx?.close();
});

const keyText = (id: string) => `${id}:${randomBytes(32).toString('base64')}`;
const converterOf = (keys: string): DataConverter => ({ payloadCodecs: [new EncryptionCodec(parsePayloadKeys(keys))] });

/** An order whose token and address appear nowhere else, so a search for them finds only leaks. */
function secretOrder(paymentToken = `tok_visa_${randomBytes(6).toString('hex')}`) {
  const tag = randomBytes(6).toString('hex');
  const o = orderInput({
    paymentToken,
    shippingAddress: { name: `Ada ${tag}`, line1: `${tag} Hidden Lane`, city: 'Berlin', postalCode: `P${tag}`, country: 'DE' },
  });
  return { order: o, secrets: [paymentToken, o.shippingAddress.name, o.shippingAddress.line1, o.shippingAddress.postalCode] };
}

const fetchRaw = (workflowId: string): Promise<History> => raw.workflow.getHandle(workflowId).fetchHistory();

/** Every payload in a history, with where it sits. */
function payloadsOf(history: History): { where: string; payload: temporal.api.common.v1.IPayload }[] {
  const found: { where: string; payload: temporal.api.common.v1.IPayload }[] = [];
  const visit = (node: unknown, where: string): void => {
    if (!node || typeof node !== 'object' || ArrayBuffer.isView(node)) return;
    if (Array.isArray(node)) return node.forEach((n, i) => visit(n, `${where}[${i}]`));
    const metadata = (node as { metadata?: Record<string, unknown> }).metadata;
    if (metadata && ArrayBuffer.isView(metadata.encoding)) {
      found.push({ where, payload: node as temporal.api.common.v1.IPayload });
      return;
    }
    for (const [k, v] of Object.entries(node)) visit(v, `${where}.${k}`);
  };
  (history.events ?? []).forEach((e, i) => visit(e, `event ${i + 1} (${eventName(e)})`));
  return found;
}

const eventName = (e: temporal.api.history.v1.IHistoryEvent) => Object.keys(e).find((k) => k.endsWith('EventAttributes')) ?? '?';
const encodingOf = (p: temporal.api.common.v1.IPayload) => Buffer.from(p.metadata?.encoding ?? []).toString();

/** Where the history, serialized as the server stores it, or any payload's bytes, contain a secret. */
function leaks(history: History, secrets: string[]): string[] {
  const bytes = Buffer.from(temporal.api.history.v1.History.encode(history).finish());
  const found = secrets.filter((s) => bytes.includes(s)).map((s) => `${s} in the serialized history`);
  for (const { where, payload } of payloadsOf(history)) {
    const data = Buffer.from(payload.data ?? []);
    for (const s of secrets) if (data.includes(s)) found.push(`${s} in ${where}`);
  }
  return found;
}

/**
 * The payloads the codec must seal: all but the ones the SDK never passes to a codec (search
 * attributes, headers) and the markers' bookkeeping that Temporal's core writes itself (a patch's
 * ID, a local activity's type and sequence number; its result is sealed). The search for the
 * secrets covers those too.
 */
const mustBeSealed = (where: string) =>
  !/\.(searchAttributes|header)\./.test(where) && !/markerRecordedEventAttributes\.details\.(patch-data|data)\./.test(where);

describe('what Temporal keeps of a saga', () => {
  test('no payment token or shipping address in any event of a completed, a declined and a compensated saga; every payload sealed', async () => {
    const runs = [secretOrder(), secretOrder('tok_decline'), secretOrder()];
    for (const r of runs) await seedInventory(ctx.db, { [r.order.items[0]!.sku]: 5 });
    // The carrier is down for the third: its label fails for good, the charge is refunded, the stock released.
    await addFault(ctx.carrier.url, { kind: 'error', path: '/shipments', keyPrefix: `order-${runs[2]!.order.orderId}/`, times: SHIPMENT_ATTEMPTS });
    const handles = await Promise.all(runs.map((r) => startOrderSaga(ctx.client, r.order, taskQueue)));
    const results = await Promise.all(handles.map((h) => h.result()));
    expect(results.map((r) => [r.status, r.failure?.type])).toEqual([
      ['completed', undefined],
      ['compensated', 'PaymentDeclined'],
      ['compensated', 'ProviderUnavailable'],
    ]);

    for (const [i, h] of handles.entries()) {
      const history = await fetchRaw(h.workflowId);
      const payloads = payloadsOf(history);
      expect(payloads.length).toBeGreaterThan(10);
      expect(leaks(history, runs[i]!.secrets)).toEqual([]);
      const plain = payloads.filter((p) => mustBeSealed(p.where) && encodingOf(p.payload) !== 'binary/encrypted').map((p) => p.where);
      expect(plain).toEqual([]);
      expect(sealingKeyIds(history)).toEqual([process.env.SAGAFLOW_PAYLOAD_KEYS!.split(':')[0]]);
    }
  });

  test('the check finds a leak when there is one: the same saga through a client and worker without the codec', async () => {
    const queue = uniqueId('plain');
    const { order, secrets } = secretOrder();
    await seedInventory(ctx.db, { [order.items[0]!.sku]: 5 });
    const plainWorker = await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue: queue, deps: ctx.deps, dataConverter: {} });
    const stop = ctx.startWorker(plainWorker);
    try {
      const handle = await startOrderSaga(raw, order, queue);
      expect((await handle.result()).status).toBe('completed');
      const found = leaks(await fetchRaw(handle.workflowId), secrets);
      expect(found).toEqual(expect.arrayContaining(secrets.map((s) => `${s} in the serialized history`)));
    } finally {
      await stop();
    }
  });
});

const keyIdOf = (p: temporal.api.common.v1.IPayload | null | undefined) => Buffer.from(p?.metadata?.['encryption-key-id'] ?? []).toString();
type JsonPayload = { metadata: Record<string, string>; data: string };
const toJson = (p: temporal.api.common.v1.IPayload): JsonPayload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  data: Buffer.from(p.data ?? []).toString('base64'),
});

describe('the codec server', () => {
  const uiOrigin = 'http://127.0.0.1:8233';
  const audit: Record<string, unknown>[] = [];
  let server: RunningCodecServer;
  let sealed: { workflowId: string; input: JsonPayload[]; paymentToken: string; secrets: string[] };

  beforeAll(async () => {
    const codec = dataConverterFromEnv().payloadCodecs![0]!;
    server = await startCodecServer({ codec, token, corsOrigins: [uiOrigin], log: (l) => audit.push(l) });
    const { order, secrets } = secretOrder();
    await seedInventory(ctx.db, { [order.items[0]!.sku]: 5 });
    const handle = await startOrderSaga(ctx.client, order, taskQueue);
    await handle.result();
    const history = await fetchRaw(handle.workflowId);
    const input = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads!.map(toJson);
    sealed = { workflowId: handle.workflowId, input, paymentToken: order.paymentToken, secrets };
  });
  afterAll(async () => {
    await server?.close();
  });

  const post = (op: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${server.url}/${op}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const bearer = { Authorization: `Bearer ${token}` };

  test('decodes a saga’s payloads for the holder of its token, and answers 401 to anyone else', async () => {
    const ok = await post('decode', { payloads: sealed.input }, { ...bearer, 'X-Namespace': ctx.namespace });
    expect(ok.status).toBe(200);
    const [decoded] = ((await ok.json()) as { payloads: JsonPayload[] }).payloads;
    expect(Buffer.from(decoded!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
    const order = JSON.parse(Buffer.from(decoded!.data, 'base64').toString()) as { paymentToken: string };
    expect(order.paymentToken).toBe(sealed.paymentToken);
    expect(audit).toContainEqual(expect.objectContaining({ msg: 'codec request', op: 'decode', status: 200, via: 'token', namespace: ctx.namespace, payloads: 1 }));

    const refusals: Record<string, string>[] = [
      {},
      { Authorization: `Bearer ${randomBytes(24).toString('base64url')}` },
      { Authorization: `Bearer ${token}x` },
      { Authorization: `Bearer ${token.slice(0, -1)}` },
      { Authorization: `Basic ${token}` },
      { Authorization: token },
      // The UI's origin gets no pass outside the dev stack.
      { Origin: uiOrigin },
    ];
    for (const headers of refusals) {
      const res = await post('decode', { payloads: sealed.input }, headers);
      const text = await res.text();
      expect({ headers, status: res.status }).toEqual({ headers, status: 401 });
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="sagaflow-codec"');
      for (const s of sealed.secrets) expect(text).not.toContain(s);
    }
    expect(audit.filter((l) => l.status === 401)).toHaveLength(7);
  });

  test('encode seals with the active key, and decode opens what it sealed', async () => {
    const plain = { metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('{"paymentToken":"tok_x"}').toString('base64') };
    const res = await post('encode', { payloads: [plain] }, bearer);
    expect(res.status).toBe(200);
    const [encoded] = ((await res.json()) as { payloads: JsonPayload[] }).payloads;
    expect(Buffer.from(encoded!.metadata.encoding!, 'base64').toString()).toBe('binary/encrypted');
    expect(Buffer.from(encoded!.metadata['encryption-key-id']!, 'base64').toString()).toBe(process.env.SAGAFLOW_PAYLOAD_KEYS!.split(':')[0]);
    const back = await post('decode', { payloads: [encoded] }, bearer);
    expect(((await back.json()) as { payloads: JsonPayload[] }).payloads).toEqual([plain]);
    expect((await post('encode', { payloads: [plain] })).status).toBe(401);
  });

  test('altered ciphertext is refused (422, naming the key); a malformed body is 400, a non-JSON one 415', async () => {
    const data = Buffer.from(sealed.input[0]!.data, 'base64');
    data[data.length - 5]! ^= 1;
    const res = await post('decode', { payloads: [{ ...sealed.input[0]!, data: data.toString('base64') }] }, bearer);
    expect(res.status).toBe(422);
    const keyId = process.env.SAGAFLOW_PAYLOAD_KEYS!.split(':')[0];
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain(`key "${keyId}" failed authentication`);
    expect((await post('decode', { payload: [] }, bearer)).status).toBe(400);
    const form = await fetch(`${server.url}/decode`, { method: 'POST', headers: { ...bearer, 'Content-Type': 'text/plain' }, body: JSON.stringify({ payloads: sealed.input }) });
    expect(form.status).toBe(415);
    expect((await fetch(`${server.url}/decode`, { headers: bearer })).status).toBe(405);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  test('CORS: the preflight of the UI’s origin allows Content-Type, Authorization and X-Namespace; another origin is refused', async () => {
    const preflight = (origin: string) =>
      fetch(`${server.url}/decode`, {
        method: 'OPTIONS',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,authorization,x-namespace' },
      });
    const ok = await preflight(uiOrigin);
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe(uiOrigin);
    expect(ok.headers.get('access-control-allow-methods')).toContain('POST');
    expect(ok.headers.get('access-control-allow-headers')?.split(/,\s*/).map((h) => h.toLowerCase()).sort()).toEqual(['authorization', 'content-type', 'x-namespace']);
    const other = await preflight('https://evil.example');
    expect(other.status).toBe(403);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    // The answer itself carries the origin, so the UI can read it.
    const answer = await post('decode', { payloads: sealed.input }, { ...bearer, Origin: uiOrigin, 'X-Namespace': ctx.namespace });
    expect(answer.headers.get('access-control-allow-origin')).toBe(uiOrigin);
  });

  test('on the dev stack, its own UI’s origin needs no token from this machine; a token it does send must be right', async () => {
    const dev = await startCodecServer({ codec: dataConverterFromEnv().payloadCodecs![0]!, token, corsOrigins: [uiOrigin], localOriginsWithoutToken: [uiOrigin] });
    try {
      const decode = (headers: Record<string, string>) =>
        fetch(`${dev.url}/decode`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ payloads: sealed.input }) });
      expect((await decode({ Origin: uiOrigin, 'X-Namespace': ctx.namespace })).status).toBe(200);
      expect((await decode({ Origin: 'http://127.0.0.1:9' })).status).toBe(401);
      expect((await decode({})).status).toBe(401);
      expect((await decode({ Origin: uiOrigin, Authorization: 'Bearer not-the-token' })).status).toBe(401);
    } finally {
      await dev.close();
    }
  });

  const cli = findBuiltTemporalCli(process.env.TEMPORAL_CLI_PATH);
  (cli ? test : test.skip)('the Temporal CLI shows the decoded history with --codec-auth, and with a wrong token never the token or the address', async () => {
    const show = (...extra: string[]) =>
      new Promise<{ code: number; out: string }>((resolve) =>
        execFile(
          cli!.path,
          ['workflow', 'show', '--workflow-id', sealed.workflowId, '--address', process.env.TEMPORAL_ADDRESS!, '--namespace', ctx.namespace,
            '--codec-endpoint', server.url, '--output', 'json', ...extra],
          { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
          (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
        ),
      );
    // The JSON output keeps payloads as protobuf JSON: encodings and data in base64, decoded here.
    const readable = (out: string) => {
      const found: string[] = [];
      const visit = (node: unknown): void => {
        if (!node || typeof node !== 'object') return;
        const { metadata, data } = node as { metadata?: Record<string, string>; data?: unknown };
        if (metadata?.encoding && typeof data === 'string') {
          found.push(`${Buffer.from(metadata.encoding, 'base64').toString()} ${Buffer.from(data, 'base64').toString()}`);
        }
        Object.values(node).forEach(visit);
      };
      try {
        visit(JSON.parse(out));
      } catch {
        found.push(out);
      }
      return found.join('\n');
    };
    const authorised = await show('--codec-auth', `Bearer ${token}`);
    expect(authorised.code).toBe(0);
    const shown = readable(authorised.out);
    for (const s of sealed.secrets) expect(shown).toContain(s);
    expect(shown).not.toContain('binary/encrypted');
    const refused = await show('--codec-auth', `Bearer ${randomBytes(24).toString('base64url')}`);
    // The CLI retries the refused decode until its deadline, then fails.
    expect(refused.code).not.toBe(0);
    for (const s of sealed.secrets) expect(readable(refused.out)).not.toContain(s);
    for (const s of sealed.secrets) expect(refused.out).not.toContain(s);
    expect(audit).toContainEqual(expect.objectContaining({ op: 'decode', status: 401, namespace: ctx.namespace }));
  });
});

describe('key rotation in the middle of a saga', () => {
  const idA = uniqueId('key-a');
  const idB = uniqueId('key-b');
  const [A, B] = [keyText(idA), keyText(idB)];
  const rotated = converterOf(`${B},${A}`);
  let history: History;
  let captured: ReturnType<typeof loadCases>;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-sealed-histories-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a saga started under key A and finished by workers on [B, A] completes; its history mixes both; the capture names them', async () => {
    const queue = uniqueId('rotate');
    const { order, secrets } = secretOrder();
    await seedInventory(ctx.db, { [order.items[0]!.sku]: 5 });
    const underA = converterOf(A);
    const clientA = new Client({ connection: ctx.client.connection, namespace: ctx.namespace, dataConverter: underA });
    // An orderSaga (the first type: its charge on the payments queue), on the workflow's queue alone:
    // its local steps run under A, then the charge waits on the payments queue.
    const stopFirst = ctx.startWorker(
      await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue: queue, deps: ctx.deps, queues: ['workflows'], dataConverter: underA }),
    );
    const handle = await startOrderSaga(clientA, order, queue, { workflowType: ORDER_SAGA_V1_WORKFLOW_TYPE });
    for (let i = 0; ; i++) {
      const events = (await fetchRaw(handle.workflowId)).events ?? [];
      if (events.some((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'chargePayment')) break;
      if (i > 200) throw new Error('the charge was never scheduled');
      await new Promise((r) => setTimeout(r, 100));
    }
    await stopFirst();

    // The rotation: every worker restarted with B active and A kept.
    const stopSecond = ctx.startWorker(
      await createSagaWorker({ connection: ctx.nativeConnection, namespace: ctx.namespace, taskQueue: queue, deps: ctx.deps, dataConverter: rotated }),
    );
    try {
      const clientBA = new Client({ connection: ctx.client.connection, namespace: ctx.namespace, dataConverter: rotated });
      expect((await clientBA.workflow.getHandle(handle.workflowId).result()).status).toBe('completed');
    } finally {
      await stopSecond();
    }

    history = await fetchRaw(handle.workflowId);
    const events = history.events!;
    expect(keyIdOf(events[0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0])).toBe(idA);
    expect(keyIdOf(events.at(-1)!.workflowExecutionCompletedEventAttributes!.result!.payloads![0])).toBe(idB);
    expect(sealingKeyIds(history)).toEqual([idA, idB].sort());
    expect(leaks(history, secrets)).toEqual([]);

    // Captured as `npm run histories:capture` does: written sealed, its manifest naming both keys.
    const captureClient = new Client({ connection: ctx.client.connection, namespace: ctx.namespace, dataConverter: rotated });
    let written: Awaited<ReturnType<typeof captureHistories>> = [];
    // Visibility is eventually consistent.
    for (let i = 0; i < 100 && written.length === 0; i++) {
      written = await captureHistories(captureClient, { query: `WorkflowId = '${handle.workflowId}'`, dir, label: 'rotated', codeVersion: 'test' });
      if (written.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(written).toHaveLength(1);
    expect(written[0]!.payloadKeyIds).toEqual([idA, idB].sort());
    expect(written[0]!.activities).toEqual(expect.arrayContaining(['recordOrder', 'chargePayment', 'createShipment', 'completeOrder']));
    const file = fs.readFileSync(path.join(dir, written[0]!.file), 'utf8');
    for (const s of secrets) expect(file).not.toContain(s);
    captured = loadCases(dir);
  });

  test('the captured history replays with [B, A], and fails naming key A with [B] alone or with no key', async () => {
    const [both] = await replayAll(captured, { ...orderSagaReplayOptions(), dataConverter: rotated });
    if (!both?.ok) throw new Error(describeOutcome(both!));
    expect(both.endingMatches).toBe(true);
    expect(both.replayed).toMatchObject({ kind: 'completed', result: { status: 'completed' } });

    const [newOnly] = await replayAll(captured, { ...orderSagaReplayOptions(), dataConverter: converterOf(B) });
    expect(newOnly?.ok).toBe(false);
    // The codec's own message, as the replay reports it (quotes escaped in its failure's text).
    expect(describeOutcome(newOnly!)).toMatch(new RegExp(`payload sealed with key \\\\*"${idA}\\\\*", which is not configured`));

    const [none] = await replayAll(captured, orderSagaReplayOptions());
    expect(none?.ok).toBe(false);
  });

  test('a history whose ciphertext was altered is refused on replay, naming the key', async () => {
    const altered = temporal.api.history.v1.History.decode(temporal.api.history.v1.History.encode(history).finish());
    const input = altered.events[0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    const data = Buffer.from(input.data!);
    data[data.length - 3]! ^= 1;
    input.data = data;
    const [outcome] = await replayAll([{ ...captured[0]!, history: altered }], { ...orderSagaReplayOptions(), dataConverter: rotated });
    expect(outcome?.ok).toBe(false);
    expect(describeOutcome(outcome!)).toMatch(new RegExp(`payload sealed with key \\\\*"${idA}\\\\*" failed authentication`));
  });
});
