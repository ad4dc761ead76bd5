/**
 * What a failed provider call tells whom: its message names the service and the step (it reaches
 * the order's failure reason and API clients), its details carry the URL, the error chain and the
 * answer body for operators. Against real HTTP servers on 127.0.0.1; the error shapes fetch gives
 * elsewhere (other Node versions, a dual-stack host) are handed to the module through a stubbed fetch.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { callService } from '../../activities/provider-http';
import { carrierClient } from '../../activities/providers';
import { FailureType } from '../../workflows/order/failures';

const KEY = 'order-7/create-shipment';

/** A server on 127.0.0.1 answering every request with `handler`; closed after each test. */
const servers: http.Server[] = [];
async function serve(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
afterEach(async () => {
  jest.restoreAllMocks();
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise((resolve) => {
          s.closeAllConnections();
          s.close(resolve);
        }),
    ),
  );
});

/** A port nothing listens on: a server's, once closed. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The ApplicationFailure `call` rejects with. */
async function failureOf(call: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await call.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

const LONG = 'x'.repeat(1999) + 'yz'.repeat(1000);

describe('callService failures, on real HTTP', () => {
  test('a refused connection: the service, the step and the code; the URL and the error chain in the details', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/shipments`;
    const f = await failureOf(callService(url, KEY, {}, { timeoutMs: 5000, service: 'carrier' }));
    expect(f.message).toBe('carrier unreachable for create-shipment (ECONNREFUSED)');
    expect(f.type).toBe(FailureType.ProviderUnavailable);
    expect(f.nonRetryable).toBe(false);
    expect(f.details).toEqual([{ url, error: `fetch failed: connect ECONNREFUSED ${new URL(url).host}` }]);
  });

  test('an undo step is named as such, a key that is not a step key as itself', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/shipments/void`;
    const opts = { timeoutMs: 5000, service: 'carrier' };
    expect((await failureOf(callService(url, 'order-7/create-shipment/undo', {}, opts))).message).toBe(
      'carrier unreachable for create-shipment undo (ECONNREFUSED)',
    );
    expect((await failureOf(callService(url, 'not-a-step-key', {}, opts))).message).toBe('carrier unreachable for not-a-step-key (ECONNREFUSED)');
  });

  test('no answer within the timeout: said so, with the timeout', async () => {
    const base = await serve((_req, res) => setTimeout(() => res.end('{}'), 2000).unref());
    const f = await failureOf(callService(`${base}/shipments`, KEY, {}, { timeoutMs: 100, service: 'carrier' }));
    expect(f.message).toBe('carrier did not answer create-shipment within 100 ms');
    expect(f.type).toBe(FailureType.ProviderUnavailable);
    expect(f.nonRetryable).toBe(false);
    expect(f.details).toEqual([{ url: `${base}/shipments`, error: expect.stringMatching(/timeout/) }]);
  });

  test('an answer that breaks off mid-body: retryable, the service and the step, no address in the message', async () => {
    const base = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"shipmentId": "sh');
      setTimeout(() => req.socket.destroy(), 50);
    });
    const f = await failureOf(callService(`${base}/shipments`, KEY, {}, { timeoutMs: 5000, service: 'carrier' }));
    expect(f.message).toMatch(/^carrier answer to create-shipment broke off \([A-Za-z_ ]+\)$/);
    expect(f.type).toBe(FailureType.ProviderUnavailable);
    expect(f.nonRetryable).toBe(false);
    expect(f.details).toEqual([{ url: `${base}/shipments`, status: 200, error: expect.stringMatching(/terminated|closed|aborted/) }]);
  });

  test('the activity cancelled while the answer is still coming: a cancellation, not a provider failure', async () => {
    let started!: () => void;
    const bodyStarted = new Promise<void>((resolve) => (started = resolve));
    const base = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"shipmentId": "sh', () => started());
    });
    const env = new MockActivityEnvironment();
    const call = env.run(() => callService(`${base}/shipments`, KEY, {}, { timeoutMs: 5000, service: 'carrier' }));
    await bodyStarted;
    await new Promise((r) => setTimeout(r, 50));
    env.cancel('CANCELLED');
    const err = await call.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CancelledFailure);
  });

  test('an answer whose body outlasts the timeout: said so, with the timeout', async () => {
    const base = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
      res.write('{"shipmentId": "sh');
    });
    const f = await failureOf(callService(`${base}/shipments`, KEY, {}, { timeoutMs: 300, service: 'carrier' }));
    expect(f.message).toBe('carrier did not answer create-shipment within 300 ms');
    expect(f.type).toBe(FailureType.ProviderUnavailable);
  });

  test('a 5xx answer: retryable, its body cut to 2000 characters in the details', async () => {
    const base = await serve((_req, res) => res.writeHead(503).end(LONG));
    const f = await failureOf(callService(`${base}/charges`, KEY, {}, { timeoutMs: 5000, service: 'payment provider' }));
    expect(f.message).toBe('payment provider answered 503 to create-shipment');
    expect(f.nonRetryable).toBe(false);
    expect(f.details).toEqual([{ url: `${base}/charges`, status: 503, body: LONG.slice(0, 2000) }]);
    expect((f.details?.[0] as { body: string }).body).toHaveLength(2000);
  });

  test('a body that is not JSON: retryable, cut to 2000 characters in the details', async () => {
    const base = await serve((_req, res) => res.writeHead(200).end(LONG));
    const f = await failureOf(callService(`${base}/charges`, KEY, {}, { timeoutMs: 5000, service: 'payment provider' }));
    expect(f.message).toBe('payment provider answered create-shipment with a body that is not JSON');
    expect(f.type).toBe(FailureType.ProviderUnavailable);
    expect(f.details).toEqual([{ url: `${base}/charges`, status: 200, body: LONG.slice(0, 2000) }]);
  });

  test('a URL fetch cannot reach at all (an unknown scheme): no code to give', async () => {
    const url = 'ftp://127.0.0.1:9/shipments';
    const f = await failureOf(callService(url, KEY, {}, { timeoutMs: 5000, service: 'carrier' }));
    expect(f.message).toBe('carrier unreachable for create-shipment (connection failed)');
    expect(f.details).toEqual([{ url, error: 'fetch failed: unknown scheme' }]);
  });

  test("the carrier's failures name the carrier", async () => {
    const base = await serve((_req, res) => res.writeHead(503).end());
    const carrier = carrierClient({ carrierUrl: base, paymentProviderUrl: base, providerTimeoutMs: 5000 });
    const f = await failureOf(carrier.createLabel(KEY, { orderId: 'order-7', address: {} as never, items: [] }));
    expect(f.message).toBe('carrier answered 503 to create-shipment');
  });
});

/** An Error with `code` and `cause`, as Node's network errors are. */
const error = (message: string, props: { code?: unknown; cause?: unknown } = {}) => Object.assign(new Error(message), props);

describe('callService failures, from the errors fetch may reject with', () => {
  const url = 'http://provider.test/shipments';
  const fail = async (rejection: unknown) => {
    jest.spyOn(globalThis, 'fetch').mockRejectedValue(rejection);
    return failureOf(callService(url, KEY, {}, { timeoutMs: 5000, service: 'carrier' }));
  };

  test.each<[string, unknown, string, string]>([
    [
      'both addresses of a dual-stack host refused (an AggregateError without a code of its own)',
      new TypeError('fetch failed', { cause: new AggregateError([error('connect ECONNREFUSED ::1:80', { code: 'ECONNREFUSED' }), error('connect ECONNREFUSED 127.0.0.1:80', { code: 'ECONNREFUSED' })]) }),
      'ECONNREFUSED',
      'fetch failed',
    ],
    ['a code on the error itself', error('socket hang up', { code: 'ECONNRESET' }), 'ECONNRESET', 'socket hang up'],
    [
      'an empty AggregateError, the code on the error itself',
      error('fetch failed', { code: 'ETIMEDOUT', cause: new AggregateError([]) }),
      'ETIMEDOUT',
      'fetch failed',
    ],
    ['a cause without a code', new TypeError('fetch failed', { cause: new Error('other side closed') }), 'connection failed', 'fetch failed: other side closed'],
    ['a code that names the host', error('fetch failed', { cause: error('refused', { code: 'ECONNREFUSED 10.0.0.7:443' }) }), 'connection failed', 'fetch failed: refused'],
    ['a code that is a sentence', error('fetch failed', { cause: error('refused', { code: 'connect ECONNREFUSED' }) }), 'connection failed', 'fetch failed: refused'],
    ['a numeric code', error('aborted', { code: 20 }), 'connection failed', 'aborted'],
    ['an error without a message in the chain', new TypeError('fetch failed', { cause: error('', { code: 'EPIPE' }) }), 'EPIPE', 'fetch failed'],
    ['a message that is not a string', error('fetch failed', { cause: { message: 42, code: 'EPIPE' } }), 'EPIPE', 'fetch failed'],
    ['no message anywhere', error(''), 'connection failed', 'Error'],
    ['not an error at all', undefined, 'connection failed', 'undefined'],
  ])('%s', async (_case, rejection, code, explained) => {
    const f = await fail(rejection);
    expect(f.message).toBe(`carrier unreachable for create-shipment (${code})`);
    expect(f.type).toBe(FailureType.ProviderUnavailable);
    expect(f.nonRetryable).toBe(false);
    expect(f.details).toEqual([{ url, error: explained }]);
  });

  test('a chain of causes is told five deep, even one that loops', async () => {
    const deep = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].reduceRight<Error | undefined>((cause, m) => error(m, { cause }), undefined);
    expect((await fail(deep)).details).toEqual([{ url, error: 'a: b: c: d: e' }]);
    const loop = error('fetch failed', { code: 'ECONNRESET' });
    loop.cause = error('again', { cause: loop });
    expect((await fail(loop)).details).toEqual([{ url, error: 'fetch failed: again: fetch failed: again: fetch failed' }]);
  });
});
