import { Writable } from 'node:stream';
import { createLogger, lineLogger, TemporalLogger } from '../../src/observability/log';

function capture(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ service: 'sagaflow-test', level, destination: { write: (s: string) => lines.push(JSON.parse(s)) } });
  return { logger, lines };
}

test('each line has an ISO time, a level word, the service and the message', () => {
  const { logger, lines } = capture();
  lineLogger(logger)({ msg: 'order created', orderId: 'ord_1', workflowId: 'order-ord_1' });
  lineLogger(logger)({ level: 'warn', msg: 'purge failed', error: 'boom' });
  lineLogger(logger)({ level: 'debug', msg: 'not shown at info' });
  expect(lines).toEqual([
    { level: 'info', ts: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), service: 'sagaflow-test', orderId: 'ord_1', workflowId: 'order-ord_1', msg: 'order created' },
    { level: 'warn', ts: expect.any(String), service: 'sagaflow-test', error: 'boom', msg: 'purge failed' },
  ]);
});

test("Temporal's logs: no task token, routine life-cycle lines at debug, the rest at their level with their identifiers", () => {
  const { logger, lines } = capture();
  const temporal = new TemporalLogger(logger);
  temporal.info('Worker state changed', { sdkComponent: 'worker', taskQueue: 'q', state: 'RUNNING' });
  temporal.warn('No workflows registered, not polling for workflow tasks', { taskQueue: 'q-payments' });
  temporal.info('asset workflow-bundle-1.js 1.67 MiB [emitted]\nruntime modules 883 bytes');
  temporal.info('step attempt succeeded', { taskToken: 'CiQwMWEy'.repeat(20), workflowId: 'order-ord_1', activityType: 'chargePayment' });
  // Said again by the step observer, with the step and its key: the SDK's own line is debug.
  temporal.warn('Activity failed', { workflowId: 'order-ord_1', error: new Error('card declined') });
  temporal.warn('Workflow task failed', { workflowId: 'order-ord_1', error: new Error('boom in workflow code') });
  expect(lines.map((l) => [l.level, l.msg])).toEqual([
    ['info', 'step attempt succeeded'],
    ['warn', 'Workflow task failed'],
  ]);
  expect(lines[0]).not.toHaveProperty('taskToken');
  expect(lines[0]).toMatchObject({ workflowId: 'order-ord_1', activityType: 'chargePayment' });
  expect(lines[1]).toMatchObject({ error: { name: 'Error', message: 'boom in workflow code' } });
});

test('LOG_FORMAT=pretty writes the same lines for a person: time, level word, service, message, then the fields', async () => {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const logger = createLogger({ service: 'sagaflow-test', format: 'pretty', destination: sink as never });
  lineLogger(logger)({ level: 'warn', msg: 'saga ended', workflowId: 'order-ord_1', status: 'compensated' });
  lineLogger(logger)({ level: 'debug', msg: 'not shown at info' });
  await new Promise((r) => setImmediate(r));
  const text = chunks.join('');
  expect(text).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: sagaflow-test: saga ended\n {4}workflowId: "order-ord_1"\n {4}status: "compensated"\n$/);
  expect(() => JSON.parse(text)).toThrow();
  expect(() => createLogger({ service: 'sagaflow-test', format: 'yaml' })).toThrow('LOG_FORMAT: json or pretty, not "yaml"');
});
