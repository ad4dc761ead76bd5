import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import { clientConnectionOptions, closedConnectionGuard, temporalTarget } from '../../src/temporal-connect';

const noFile = { TEMPORAL_CONFIG_FILE: path.join(os.tmpdir(), 'sagaflow-no-such-temporal.toml') };

test('a plain address and namespace, as for the dev server', () => {
  const t = temporalTarget({ ...noFile, TEMPORAL_ADDRESS: '127.0.0.1:7233', TEMPORAL_NAMESPACE: 'orders' });
  expect(t.connectionOptions.address).toBe('127.0.0.1:7233');
  expect(t.namespace).toBe('orders');
  expect(t.connectionOptions.apiKey).toBeUndefined();
});

test('Temporal Cloud with an API key: TLS on, the key passed through', () => {
  const t = temporalTarget({
    ...noFile,
    TEMPORAL_ADDRESS: 'acme.a1b2c.tmprl.cloud:7233',
    TEMPORAL_NAMESPACE: 'acme.a1b2c',
    TEMPORAL_API_KEY: 'secret-key',
  });
  expect(t.connectionOptions.apiKey).toBe('secret-key');
  expect(t.connectionOptions.tls).toBeTruthy();
});

test('mTLS client certificates from files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-tls-'));
  fs.writeFileSync(path.join(dir, 'client.pem'), 'CERT');
  fs.writeFileSync(path.join(dir, 'client.key'), 'KEY');
  const t = temporalTarget({
    ...noFile,
    TEMPORAL_ADDRESS: 'temporal.internal:7233',
    TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(dir, 'client.pem'),
    TEMPORAL_TLS_CLIENT_KEY_PATH: path.join(dir, 'client.key'),
    TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
  });
  const tls = t.connectionOptions.tls as { clientCertPair?: { crt: Uint8Array; key: Uint8Array }; serverNameOverride?: string };
  expect(Buffer.from(tls.clientCertPair!.crt).toString()).toBe('CERT');
  expect(Buffer.from(tls.clientCertPair!.key).toString()).toBe('KEY');
  expect(tls.serverNameOverride).toBe('temporal.internal');
});

test('a TOML profile supplies what the environment does not', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sagaflow-toml-')), 'temporal.toml');
  fs.writeFileSync(file, '[profile.staging]\naddress = "staging.internal:7233"\nnamespace = "orders-staging"\n');
  const t = temporalTarget({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging' });
  expect(t.connectionOptions.address).toBe('staging.internal:7233');
  expect(t.namespace).toBe('orders-staging');
});

test('no address anywhere is a clear error', () => {
  expect(() => temporalTarget({ ...noFile })).toThrow(/TEMPORAL_ADDRESS/);
});

describe('a client connection closed while a call waits to retry', () => {
  // Nothing listens on port 1: every attempt is refused at once (UNAVAILABLE), so
  // the call spends its time in the retry interceptor's backoff timer.
  const unreachable = { address: '127.0.0.1:1' };

  /** The call's outcome, or 'never settled' if it has not settled within a generous bound (a liveness check). */
  async function outcome(call: Promise<unknown>): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const never = new Promise<string>((resolve) => (timer = setTimeout(() => resolve('never settled'), 15_000)));
    try {
      return await Promise.race([call.then(() => 'resolved', (err: Error & { code?: number }) => `rejected ${err.code}: ${err.message}`), never]);
    } finally {
      clearTimeout(timer);
    }
  }

  test('the call is rejected as CANCELLED, naming the closed connection, and nothing throws from the retry timer', async () => {
    const conn = Connection.lazy(clientConnectionOptions(unreachable));
    const call = conn.withDeadline(Date.now() + 30_000, () => conn.workflowService.getSystemInfo({}));
    await new Promise((r) => setTimeout(r, 400)); // a few refused attempts in: a retry is pending
    await conn.close();
    expect(await outcome(call)).toMatch(/^rejected 1: 1 CANCELLED: the connection to Temporal is closed \(Channel has been shut down\)$/);
  });

  test('a call made after the close is rejected at once, as without the guard', async () => {
    const conn = Connection.lazy(clientConnectionOptions(unreachable));
    await conn.close();
    expect(await outcome(conn.workflowService.getSystemInfo({}))).toBe('rejected undefined: Channel has been shut down');
  });

  test('interceptors of the caller replace the default retries and keep the guard inside them', async () => {
    const retries = makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: 100, initialIntervalMs: () => 50 }));
    const options = clientConnectionOptions({ ...unreachable, interceptors: [retries] });
    expect(options.interceptors).toEqual([retries, closedConnectionGuard]);
    const conn = Connection.lazy(options);
    const call = conn.withDeadline(Date.now() + 30_000, () => conn.workflowService.getSystemInfo({}));
    await new Promise((r) => setTimeout(r, 300));
    await conn.close();
    expect(await outcome(call)).toMatch(/CANCELLED: the connection to Temporal is closed/);
  });
});
