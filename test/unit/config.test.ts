import { ConfigError, loadConfig } from '../../src/config';
import { workerOptions } from '../../workers/options';

test('defaults apply when nothing is set, and empty strings count as unset', () => {
  const c = loadConfig({ DATABASE_URL: '', TEMPORAL_ADDRESS: '' });
  expect(c.DATABASE_URL).toBeUndefined();
  expect(c.TEMPORAL_ADDRESS).toBeUndefined();
  expect(c.TEMPORAL_NAMESPACE).toBe('default');
  expect(c.PROVIDER_TIMEOUT_MS).toBe(5000);
});

test('values are parsed and coerced', () => {
  const c = loadConfig({
    DATABASE_URL: 'postgresql://u:p@db:5432/x',
    TEMPORAL_ADDRESS: 'temporal:7233',
    PROVIDER_TIMEOUT_MS: '750',
  });
  expect(c).toMatchObject({ DATABASE_URL: 'postgresql://u:p@db:5432/x', TEMPORAL_ADDRESS: 'temporal:7233', PROVIDER_TIMEOUT_MS: 750 });
});

test.each([
  ['DATABASE_URL', 'mysql://localhost/x'],
  ['TEMPORAL_ADDRESS', 'localhost'],
  ['PROVIDER_TIMEOUT_MS', '-5'],
  ['PAYMENT_PROVIDER_URL', 'ftp://x'],
  ['LOG_LEVEL', 'loud'],
  ['SAGAFLOW_WORKER_POLLERS', '1'],
])('a bad %s stops start-up with a message naming it', (variable, value) => {
  let err: unknown;
  try {
    loadConfig({ [variable]: value });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).issues.map((i) => i.variable)).toEqual([variable]);
  expect((err as Error).message).toContain(variable);
});

test("worker pollers: unset by default (the SDK's own), the flag wins over the environment, and fewer than 2 is refused", () => {
  expect(workerOptions([], loadConfig({})).pollers).toBeUndefined();
  expect(workerOptions([], loadConfig({ SAGAFLOW_WORKER_POLLERS: '8' })).pollers).toBe(8);
  expect(workerOptions(['--pollers', '12'], loadConfig({ SAGAFLOW_WORKER_POLLERS: '8' })).pollers).toBe(12);
  expect(() => workerOptions(['--pollers', '1'], loadConfig({}))).toThrow(/--pollers/);
});
